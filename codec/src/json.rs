//! Small JSON writers for hot paths that build bodies into a reused buffer instead of
//! going through a serializer.

/// Appends `s` as a JSON string literal (RFC 8259 section 7), quotes included.
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// Appends the decimal digits of `n`.
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::{write_str, write_u64};

    #[test]
    fn integers_match_std_formatting() {
        for n in [0, 1, 9, 10, 99, 100, 12345, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn escapes_round_trip_through_a_json_parser() {
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "ctl\u{1}\u{1f}\u{7f}",
            "nl\r\n\t",
            "ünï €",
            "",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s.as_bytes());
            let back: String = serde_json::from_slice(&out).expect("valid JSON string");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn invalid_utf8_is_not_passed_through_as_control_bytes() {
        let mut out = Vec::new();
        write_str(&mut out, b"a\x01b");
        assert_eq!(out, b"\"a\\u0001b\"");
    }
}
