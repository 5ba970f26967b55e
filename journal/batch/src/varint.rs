//! Zig-zag variable-length integers as used by Kafka's v2 record layout.

/// Appends `v` as a zig-zag varint (32-bit range).
pub fn put_varint(buf: &mut Vec<u8>, v: i32) {
    put_varlong(buf, i64::from(v));
}

/// Appends `v` as a zig-zag varlong.
pub fn put_varlong(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

/// Number of bytes `put_varlong(v)` writes.
pub fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    let bits = 64 - z.leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

/// Reads a zig-zag varlong from `buf` at `*pos`, advancing it. `None` on truncated or
/// over-long input.
pub fn get_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return None;
        }
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// Reads a zig-zag varint that must fit in 32 bits.
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    i32::try_from(get_varlong(buf, pos)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varlong_round_trips(v in any::<i64>()) {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            prop_assert_eq!(buf.len(), varlong_len(v));
            let mut pos = 0;
            prop_assert_eq!(get_varlong(&buf, &mut pos), Some(v));
            prop_assert_eq!(pos, buf.len());
        }
    }

    #[test]
    fn known_encodings() {
        let mut buf = Vec::new();
        put_varint(&mut buf, -1);
        put_varint(&mut buf, 300);
        assert_eq!(buf, [0x01, 0xd8, 0x04]);
    }

    #[test]
    fn truncated_input_is_none() {
        let mut pos = 0;
        assert_eq!(get_varlong(&[0x80, 0x80], &mut pos), None);
    }
}
