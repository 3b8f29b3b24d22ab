//! RESP command encoding (<https://redis.io/docs/latest/develop/reference/protocol-spec/>):
//! a command is an array of bulk strings, written straight into the caller's buffer.

use crate::json::write_u64;

/// Appends one command whose arguments are the concatenation of `groups`
/// (`*N\r\n` then `$len\r\narg\r\n` per argument).
pub fn write_command(out: &mut Vec<u8>, groups: &[&[&[u8]]]) {
    write_array_header(out, groups.iter().map(|g| g.len()).sum());
    for group in groups {
        write_bulks(out, group);
    }
}

/// `*count\r\n`: an array of `count` elements follows.
pub fn write_array_header(out: &mut Vec<u8>, count: usize) {
    out.push(b'*');
    write_u64(out, count as u64);
    out.extend_from_slice(b"\r\n");
}

/// Each of `args` as a bulk string.
pub fn write_bulks(out: &mut Vec<u8>, args: &[&[u8]]) {
    for arg in args {
        out.push(b'$');
        write_u64(out, arg.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Each of `args` as a bulk string.
pub fn write_bulk_iter<'a>(out: &mut Vec<u8>, args: impl Iterator<Item = &'a [u8]>) {
    for arg in args {
        write_bulks(out, &[arg]);
    }
}

#[cfg(test)]
mod tests {
    use super::write_command;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        write_command(&mut out, &[&[b"SET", b"k"], &[b"", b"a\r\nb"]]);
        assert_eq!(
            out,
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$4\r\na\r\nb\r\n"
        );
        out.clear();
        write_command(&mut out, &[&[b"PING"]]);
        assert_eq!(out, b"*1\r\n$4\r\nPING\r\n");
    }
}
