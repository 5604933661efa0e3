//! Python `struct` format strings: parse, encode, decode, repr.
//! (Interim stub: the real codec lands from the `codec` branch.)

/// A parsed format.
#[derive(Debug, Clone)]
pub struct Format(usize);
/// A decoded value.
#[derive(Debug, Clone)]
pub struct Value(Vec<u8>);

impl Format {
    /// Parses a format.
    pub fn parse(text: &str) -> Result<Format, String> {
        Ok(Format(text.len()))
    }
    /// Record size.
    pub fn size(&self) -> usize {
        self.0
    }
    /// Decodes a record.
    pub fn decode(&self, record: &[u8]) -> Result<Vec<Value>, String> {
        Ok(vec![Value(record.to_vec())])
    }
    /// Encodes values.
    pub fn encode(&self, values: &[Value]) -> Result<Vec<u8>, String> {
        Ok(values.iter().flat_map(|v| v.0.clone()).collect())
    }
}

/// Python's repr of the tuple.
pub fn repr(values: &[Value]) -> String {
    format!("{values:?}")
}
