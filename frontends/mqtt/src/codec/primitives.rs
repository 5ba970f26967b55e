//! MQTT's data representations: big-endian integers, the variable byte integer, UTF-8
//! strings and binary data, read from a bounded slice and written to a `BytesMut`.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;

/// Largest value a variable byte integer can hold (four bytes).
pub const VARINT_MAX: u32 = 268_435_455;

/// A cursor over one packet's bytes. Every read checks the bounds; running out of bytes
/// inside a packet whose length was announced is a malformed packet, not "incomplete".
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// Reads `buf[start..end]`.
    pub fn new(buf: &'a Bytes, start: usize, end: usize) -> Self {
        Reader {
            buf,
            pos: start,
            end,
        }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// A reader over the next `len` bytes; this one skips them.
    pub fn sub(&mut self, len: usize) -> Result<Reader<'a>, DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::malformed(
                "length runs past the end of the packet",
            ));
        }
        let r = Reader::new(self.buf, self.pos, self.pos + len);
        self.pos += len;
        Ok(r)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .filter(|_| self.pos < self.end)
            .ok_or_else(|| DecodeError::malformed("packet ends early"))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }

    /// A variable byte integer; more than four bytes is malformed.
    pub fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::malformed(
            "variable byte integer longer than four bytes",
        ))
    }

    /// Two-byte length then that many bytes, shared with the packet buffer.
    pub fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        if len > self.remaining() {
            return Err(DecodeError::malformed(
                "string or binary runs past the end of the packet",
            ));
        }
        let out = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(out)
    }

    /// A UTF-8 encoded string: valid UTF-8 without U+0000 [MQTT-1.5.4-1, MQTT-1.5.4-2].
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let s = std::str::from_utf8(&raw)
            .map_err(|_| DecodeError::malformed("string is not valid UTF-8"))?;
        if s.contains('\0') {
            return Err(DecodeError::malformed("string contains U+0000"));
        }
        Ok(s.to_owned())
    }

    /// The rest of the packet.
    pub fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..self.end);
        self.pos = self.end;
        out
    }
}

/// Number of bytes `put_varint(v)` writes.
pub fn varint_len(v: u32) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a variable byte integer (`v` must not exceed [`VARINT_MAX`]).
pub fn put_varint(out: &mut BytesMut, mut v: u32) {
    loop {
        let mut b = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if v == 0 {
            break;
        }
    }
}

/// Writes a two-byte length and the bytes.
pub fn put_binary(out: &mut BytesMut, b: &[u8]) {
    out.put_u16(b.len() as u16);
    out.put_slice(b);
}

/// Encoded size of a string or binary field.
pub fn binary_len(b: &[u8]) -> usize {
    2 + b.len()
}
