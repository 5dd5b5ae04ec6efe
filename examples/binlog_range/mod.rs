//! What the benchmark examples share: a binlog file read into memory with
//! the byte range [START, END) of whole events to go over.

/// A binlog file's bytes and the range of events the caller goes over.
pub struct BinlogRange {
    pub bytes: Vec<u8>,
    pub start: usize,
    pub end: usize,
}

impl BinlogRange {
    /// Reads `file` and checks that `start..end` lies after its magic
    /// number and within it.
    pub fn load(file: &str, start: &str, end: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let (start, end): (usize, usize) = (start.parse()?, end.parse()?);
        let bytes = std::fs::read(file)?;
        if end > bytes.len() || start < 4 || start > end {
            return Err(
                format!("{file} has {} bytes: START..END does not fit", bytes.len()).into(),
            );
        }
        Ok(BinlogRange { bytes, start, end })
    }

    /// The size of the event at `at`, from its header.
    pub fn size_at(&self, at: usize) -> usize {
        u32::from_le_bytes(self.bytes[at + 9..at + 13].try_into().unwrap()) as usize
    }

    /// The event at `at`, whole.
    pub fn event_at(&self, at: usize) -> &[u8] {
        &self.bytes[at..at + self.size_at(at)]
    }

    /// Megabytes in the range, for rates.
    pub fn megabytes(&self) -> f64 {
        (self.end - self.start) as f64 / 1048576.0
    }
}
