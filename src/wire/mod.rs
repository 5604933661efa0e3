//! Pure wire formats: parsing and building bytes, no sockets, no I/O, no
//! reactor. Both sides use them: the daemon's services and the client
//! layer (`probe`), so they sit below both.

pub mod proxy;
