//! A pool of send buffers. A connection borrows one only while it owes its
//! peer bytes that a write could not take, and gives it back once drained,
//! so an idle connection owns no buffer at all.

/// Buffers of one capacity, recycled.
#[derive(Debug)]
pub struct BufferPool {
    capacity: usize,
    free: Vec<Vec<u8>>,
    max_free: usize,
}

impl BufferPool {
    /// A pool of buffers of `capacity` bytes that keeps at most `max_free`
    /// spare ones (the rest go back to the allocator).
    pub fn new(capacity: usize, max_free: usize) -> Self {
        BufferPool {
            capacity,
            free: Vec::new(),
            max_free,
        }
    }

    /// An empty buffer with room for `capacity` bytes.
    pub fn take(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    /// Gives a buffer back for reuse.
    pub fn give(&mut self, mut buffer: Vec<u8>) {
        if self.free.len() < self.max_free && buffer.capacity() == self.capacity {
            buffer.clear();
            self.free.push(buffer);
        }
    }

    /// Spare buffers held.
    pub fn spare(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycles_buffers_up_to_the_limit() {
        let mut pool = BufferPool::new(64, 1);
        let a = pool.take();
        let b = pool.take();
        assert_eq!(a.capacity(), 64);
        pool.give(a);
        pool.give(b);
        assert_eq!(pool.spare(), 1);
        let c = pool.take();
        assert!(c.is_empty());
        assert_eq!(pool.spare(), 0);
    }

    #[test]
    fn refuses_buffers_that_grew() {
        let mut pool = BufferPool::new(8, 4);
        let mut big = pool.take();
        big.extend_from_slice(&[0; 100]);
        pool.give(big);
        assert_eq!(pool.spare(), 0);
    }
}
