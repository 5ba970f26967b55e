//! The `records` field of a Produce request: the Kafka v2 record batches it holds, each
//! `[base offset: 8][length: 4][length bytes]`, split without copying. Request framing is
//! the Kafka frontend's concern; the batch codec only sees one batch at a time.

use bytes::Bytes;
use strata_batch::BatchError;

/// Splits `records` into its record batches (zero-copy slices).
pub fn split(records: &Bytes) -> Result<Vec<Bytes>, BatchError> {
    let invalid = |reason: &str| BatchError::Invalid(reason.to_string());
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        if records.len() - pos < 12 {
            return Err(invalid("truncated record batch"));
        }
        let len = i32::from_be_bytes([
            records[pos + 8],
            records[pos + 9],
            records[pos + 10],
            records[pos + 11],
        ]);
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| (pos + 12).checked_add(l))
            .filter(|&e| e <= records.len())
            .ok_or_else(|| invalid("record batch runs past the records"))?;
        out.push(records.slice(pos..end));
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 8];
        v.extend_from_slice(&(body.len() as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn splits_back_to_back_batches_and_refuses_overruns() {
        let mut both = framed(b"abc");
        both.extend(framed(b"defgh"));
        let parts = split(&Bytes::from(both.clone())).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[0][12..], b"abc");
        assert_eq!(&parts[1][12..], b"defgh");
        assert!(split(&Bytes::new()).unwrap().is_empty());
        assert!(split(&Bytes::from(both[..both.len() - 1].to_vec())).is_err());
        assert!(split(&Bytes::from(vec![0u8; 11])).is_err());
        let mut negative = vec![0u8; 8];
        negative.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(split(&Bytes::from(negative)).is_err());
    }
}
