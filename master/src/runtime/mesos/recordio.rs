//! RecordIO, the framing of Mesos' event streams: each record is its length in bytes as
//! decimal ASCII, a newline, then the record itself (`5\nhello`). The master only
//! writes it; the reader here is for tests and for clients written in Rust.

use axum::body::Bytes;

/// One record framed for the stream, in one buffer (one chunk of the HTTP body).
pub fn frame(record: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(record.len() + 12);
    framed.extend_from_slice(record.len().to_string().as_bytes());
    framed.push(b'\n');
    framed.extend_from_slice(record);
    Bytes::from(framed)
}

/// Why a byte stream is not RecordIO.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    #[error("a record's length is not a decimal number: {0:?}")]
    BadLength(String),
    #[error("a record of {length} bytes is longer than the {limit} allowed")]
    TooLong { length: usize, limit: usize },
}

/// Splits a byte stream, fed in pieces of any size, back into records.
#[derive(Debug)]
pub struct Reader {
    buffer: Vec<u8>,
    max_record_len: usize,
}

/// Longest run of digits a length may have before its newline (a 64-bit length).
const MAX_LENGTH_DIGITS: usize = 20;

impl Reader {
    pub fn new(max_record_len: usize) -> Self {
        Self { buffer: Vec::new(), max_record_len }
    }

    /// Adds bytes read from the stream and returns every record they complete, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, RecordIoError> {
        self.buffer.extend_from_slice(bytes);
        let mut records = Vec::new();
        let mut start = 0;
        loop {
            let rest = &self.buffer[start..];
            let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > MAX_LENGTH_DIGITS {
                    return Err(RecordIoError::BadLength(String::from_utf8_lossy(rest).into_owned()));
                }
                break;
            };
            let digits = &rest[..newline];
            let text =
                std::str::from_utf8(digits).ok().filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
            let length: usize = text
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| RecordIoError::BadLength(String::from_utf8_lossy(digits).into_owned()))?;
            if length > self.max_record_len {
                return Err(RecordIoError::TooLong { length, limit: self.max_record_len });
            }
            let body = newline + 1;
            if rest.len() < body + length {
                break;
            }
            records.push(rest[body..body + length].to_vec());
            start += body + length;
        }
        self.buffer.drain(..start);
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_its_decimal_length_a_newline_and_its_bytes() {
        assert_eq!(&frame(b"hello")[..], b"5\nhello");
        assert_eq!(&frame(b"")[..], b"0\n");
        assert_eq!(&frame(&[b'x'; 12])[..12 + 3], b"12\nxxxxxxxxxxxx");
    }

    #[test]
    fn records_split_anywhere_are_read_back_whole_and_in_order() {
        let stream: Vec<u8> = [frame(b"{\"type\":\"HEARTBEAT\"}"), frame(b""), frame(b"second")].concat();
        for cut in 0..stream.len() {
            let mut reader = Reader::new(1024);
            let mut records = reader.feed(&stream[..cut]).expect("valid");
            records.extend(reader.feed(&stream[cut..]).expect("valid"));
            assert_eq!(
                records,
                vec![b"{\"type\":\"HEARTBEAT\"}".to_vec(), Vec::new(), b"second".to_vec()],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_length_that_is_not_a_number_or_too_long_is_an_error() {
        assert!(matches!(Reader::new(10).feed(b"x1\nabc"), Err(RecordIoError::BadLength(_))));
        assert!(matches!(Reader::new(10).feed(b"11\n"), Err(RecordIoError::TooLong { length: 11, limit: 10 })));
        assert!(matches!(Reader::new(10).feed(&[b'1'; 40]), Err(RecordIoError::BadLength(_))));
    }
}
