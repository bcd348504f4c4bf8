//! Reading a segment's bytes into a new buffer without zeroing it first.
//!
//! Why not `vec![0u8; len]` and `read_exact_at`: with `vec![0u8; len]` a
//! consumer reading 200 MB took about 61,000 page faults in its leader, one
//! for every 4 KiB read, whatever jemalloc's decay settings; the profile put
//! the faults, the kernel zeroing the new pages and TLB shootdowns under
//! the read, together a sixth of the leader's time (BENCHMARKS.md, "Session
//! 32"). A zeroed allocation got its zeroes from fresh pages; one that is not
//! zeroed reuses memory freed before as it is, and the read fills it (6,584
//! faults for the same read).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Reads exactly `len` bytes of `file` at `offset` into a new buffer.
/// Fails with [`io::ErrorKind::UnexpectedEof`] if the file ends first.
pub(crate) fn read_new_at(file: &File, len: usize, offset: u64) -> io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset
            .checked_add(buf.len() as u64)
            .and_then(|at| libc::off_t::try_from(at).ok())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "read past the largest offset")
            })?;
        let want = len - buf.len();
        let spare = &mut buf.spare_capacity_mut()[..want];
        // SAFETY: `spare` is memory this buffer owns and has not
        // initialised; `pread` writes at most `spare.len()` bytes into it
        // and reads none of it. The descriptor belongs to `file`, borrowed
        // for the whole call.
        let n =
            unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), at) };
        match n {
            n if n > 0 => {
                let n = n as usize;
                debug_assert!(n <= spare.len());
                // SAFETY: `pread` initialised the first `n` bytes past the
                // current length, and `n` is within the capacity.
                unsafe { buf.set_len(buf.len() + n) };
            }
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended {} bytes into a read of {len}", buf.len()),
                ));
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap().write_all(bytes).unwrap();
        (dir, File::open(&path).unwrap())
    }

    #[test]
    fn reads_the_bytes_asked_for() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (_dir, file) = file_of(&bytes);
        assert_eq!(read_new_at(&file, 10, 0).unwrap(), &bytes[..10]);
        assert_eq!(read_new_at(&file, 200_000, 7).unwrap(), &bytes[7..200_007]);
        assert_eq!(read_new_at(&file, 0, 5).unwrap(), Vec::<u8>::new());
        assert_eq!(read_new_at(&file, 1, 299_999).unwrap(), &bytes[299_999..]);
    }

    #[test]
    fn a_read_past_the_end_fails_as_such() {
        let (_dir, file) = file_of(&[1, 2, 3]);
        let e = read_new_at(&file, 4, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("3 bytes into a read of 4"), "{e}");
        let e = read_new_at(&file, 1, 3).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(read_new_at(&file, 1, u64::MAX).is_err());
    }
}
