//! The guest side of the ABI: what the `#[smartmodule]` expansion calls.
//!
//! Each transform is a pure function from the input buffer to the output buffer
//! (`filter`, `map`, ...), so it can be unit-tested natively; [`call`] does the pointer work
//! around it and only makes sense on wasm32, where pointers are 32 bits wide. The exports
//! every module needs (`sluice_abi_version`, `sluice_alloc`, `sluice_dealloc`,
//! `sluice_current_offset`, `sluice_panic_message`) are defined here once, on wasm32 only,
//! so a host that links this crate for its codec exports nothing.

use crate::abi::{self, Decoder, Encoder, RawRecord};
use crate::{Record, RecordData, Result, SmartModuleExtraParams, SmartOpt};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, Once, OnceLock};

/// Offset of the record being processed, read by the host after a trap to name the culprit.
static CURRENT_OFFSET: AtomicI64 = AtomicI64::new(abi::NO_OFFSET);
/// The last panic's message, read by the host after a trap.
static PANIC_MESSAGE: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static PANIC_HOOK: Once = Once::new();

/// A key and value as returned by `map`, `filter_map` and `array_map`.
pub type KeyValue = (Option<RecordData>, RecordData);

fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            if let Ok(mut m) = PANIC_MESSAGE.lock() {
                *m = info.to_string().into_bytes();
            }
        }));
    });
}

/// Accumulates output records and the first failure into a transform payload.
struct Out {
    enc: Encoder,
    count: u32,
}

impl Out {
    fn new(capacity: usize) -> Self {
        let mut enc = Encoder::with_capacity(capacity);
        enc.u8(abi::RESULT_OK).u32(0);
        Self { enc, count: 0 }
    }

    fn push(&mut self, input: &Record, key: Option<&RecordData>, value: &RecordData) {
        self.enc.record(RawRecord {
            offset: input.offset(),
            timestamp: input.timestamp(),
            key: key.map(|k| k.as_ref()),
            value: value.as_ref(),
        });
        self.count += 1;
    }

    fn finish(mut self, failure: Option<(i64, String)>) -> Vec<u8> {
        self.enc.patch_u32(1, self.count);
        match failure {
            None => {
                self.enc.u8(0);
            }
            Some((offset, message)) => {
                self.enc.u8(1).i64(offset).bytes(message.as_bytes());
            }
        }
        self.enc.finish()
    }
}

/// Runs `each` on every record of a batch, stopping at the first error.
fn transform(input: &[u8], mut each: impl FnMut(&Record, &mut Out) -> Result<()>) -> Vec<u8> {
    let mut d = Decoder::new(input);
    let records = match d.records().and_then(|r| d.end().map(|()| r)) {
        Ok(r) => r,
        Err(e) => return abi::encode_error(abi::NO_OFFSET, &format!("input batch: {e}")),
    };
    let mut out = Out::new(input.len() + 16);
    for raw in &records {
        CURRENT_OFFSET.store(raw.offset, Ordering::Relaxed);
        // SAFETY: the record lends from `input`, which outlives it (it is
        // dropped at the end of this iteration), and `each` gets it only as
        // `&Record`: keeping its data past the call takes a clone, a copy.
        let record = unsafe { Record::lend(raw) };
        if let Err(e) = each(&record, &mut out) {
            return out.finish(Some((raw.offset, e.to_string())));
        }
    }
    out.finish(None)
}

/// A filter over a batch.
pub fn filter(input: &[u8], f: impl Fn(&Record) -> Result<bool>) -> Vec<u8> {
    transform(input, |r, out| {
        if f(r)? {
            out.push(r, r.key.as_ref(), &r.value);
        }
        Ok(())
    })
}

/// A map over a batch.
pub fn map(input: &[u8], f: impl Fn(&Record) -> Result<KeyValue>) -> Vec<u8> {
    transform(input, |r, out| {
        let (k, v) = f(r)?;
        out.push(r, k.as_ref(), &v);
        Ok(())
    })
}

/// A filter-map over a batch.
pub fn filter_map(input: &[u8], f: impl Fn(&Record) -> Result<Option<KeyValue>>) -> Vec<u8> {
    transform(input, |r, out| {
        if let Some((k, v)) = f(r)? {
            out.push(r, k.as_ref(), &v);
        }
        Ok(())
    })
}

/// An array-map over a batch: every output keeps its input's offset and timestamp.
pub fn array_map(input: &[u8], f: impl Fn(&Record) -> Result<Vec<KeyValue>>) -> Vec<u8> {
    transform(input, |r, out| {
        for (k, v) in f(r)? {
            out.push(r, k.as_ref(), &v);
        }
        Ok(())
    })
}

/// An aggregate over a batch: the input starts with the accumulator, and each record yields
/// one output whose value is the accumulator after that record (so the host keeps the last).
pub fn aggregate(input: &[u8], f: impl Fn(RecordData, &Record) -> Result<RecordData>) -> Vec<u8> {
    let mut d = Decoder::new(input);
    let acc = match d.bytes("accumulator") {
        Ok(a) => a,
        Err(e) => return abi::encode_error(abi::NO_OFFSET, &format!("aggregate input: {e}")),
    };
    let rest = &input[input.len() - d.remaining()..];
    let mut acc = Some(RecordData::from(acc));
    transform(rest, |r, out| {
        let next = f(acc.take().unwrap_or_default(), r)?;
        out.push(r, r.key.as_ref(), &next);
        acc = Some(next);
        Ok(())
    })
}

/// Shows a batch of the partition's last records to the user's `look_back`
/// function; the output is an empty result, or the first error with its
/// record's offset.
pub fn look_back(input: &[u8], f: impl Fn(&Record) -> Result<()>) -> Vec<u8> {
    let mut d = Decoder::new(input);
    let records = match d.records().and_then(|r| d.end().map(|()| r)) {
        Ok(r) => r,
        Err(e) => return abi::encode_error(abi::NO_OFFSET, &format!("look_back batch: {e}")),
    };
    for raw in &records {
        CURRENT_OFFSET.store(raw.offset, Ordering::Relaxed);
        // SAFETY: as in `transform`: the record lends from `input`, which
        // outlives the call.
        let record = unsafe { Record::lend(raw) };
        if let Err(e) = f(&record) {
            return abi::encode_error(raw.offset, &e.to_string());
        }
    }
    ok_empty()
}

fn decode_params(input: &[u8]) -> std::result::Result<SmartModuleExtraParams, String> {
    let mut d = Decoder::new(input);
    let pairs = d.params().map_err(|e| format!("parameters: {e}"))?;
    d.end().map_err(|e| format!("parameters: {e}"))?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into())
}

fn ok_empty() -> Vec<u8> {
    vec![abi::RESULT_OK]
}

/// Runs the user's `init` function on the stream's parameters.
pub fn init(input: &[u8], f: impl FnOnce(SmartModuleExtraParams) -> Result<()>) -> Vec<u8> {
    match decode_params(input) {
        Ok(params) => match f(params) {
            Ok(()) => ok_empty(),
            Err(e) => abi::encode_error(abi::NO_OFFSET, &e.to_string()),
        },
        Err(e) => abi::encode_error(abi::NO_OFFSET, &e),
    }
}

/// Parses the stream's parameters into the module's `SmartOpt` struct, once.
pub fn params<P: SmartOpt>(input: &[u8], slot: &OnceLock<P>) -> Vec<u8> {
    let parsed = decode_params(input).and_then(|p| P::from_params(&p));
    match parsed {
        Ok(p) => match slot.set(p) {
            Ok(()) => ok_empty(),
            Err(_) => abi::encode_error(abi::NO_OFFSET, "parameters were already set"),
        },
        Err(e) => abi::encode_error(abi::NO_OFFSET, &e),
    }
}

/// The parameters set by [`params`], or `Default` if the host never sent any.
pub fn params_or_default<P: SmartOpt + Default>(slot: &OnceLock<P>) -> &P {
    slot.get_or_init(P::default)
}

/// Runs `f` on the buffer the host placed at `ptr` (taking ownership of it) and hands the
/// output buffer back as `(pointer << 32) | length`; the host frees it with `sluice_dealloc`.
///
/// # Safety
/// `ptr` and `len` must come from `sluice_alloc(len)`, and only on wasm32.
pub unsafe fn call(ptr: *mut u8, len: u32, f: impl FnOnce(&[u8]) -> Vec<u8>) -> u64 {
    install_panic_hook();
    // SAFETY: the caller guarantees `ptr` came from `sluice_alloc(len)`, a leaked Box<[u8]>.
    let input: Box<[u8]> =
        unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len as usize)) };
    let out = f(&input);
    drop(input);
    leak(out)
}

fn leak(out: Vec<u8>) -> u64 {
    let len = out.len() as u64;
    let ptr = Box::into_raw(out.into_boxed_slice()) as *mut u8 as usize as u64;
    (ptr << 32) | len
}

#[cfg(target_arch = "wasm32")]
mod exports {
    use super::*;

    /// The ABI version this module was built against.
    #[unsafe(no_mangle)]
    pub extern "C" fn sluice_abi_version() -> u32 {
        abi::ABI_VERSION
    }

    /// Allocates `len` bytes for the host to write an input into. Left
    /// uninitialised: the host writes every byte before the call that reads
    /// them, so zeroing would be one more pass over each batch for nothing.
    #[unsafe(no_mangle)]
    pub extern "C" fn sluice_alloc(len: u32) -> *mut u8 {
        Box::into_raw(Box::<[u8]>::new_uninit_slice(len as usize)) as *mut u8
    }

    /// Frees a buffer returned by a call.
    ///
    /// # Safety
    /// `ptr` and `len` must describe a buffer this module handed to the host.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn sluice_dealloc(ptr: *mut u8, len: u32) {
        // SAFETY: guaranteed by the caller, see above.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len as usize)) });
    }

    /// Offset of the record being processed (or -1), for the host after a trap.
    #[unsafe(no_mangle)]
    pub extern "C" fn sluice_current_offset() -> i64 {
        CURRENT_OFFSET.load(Ordering::Relaxed)
    }

    /// The last panic's message as `(pointer << 32) | length` (length 0: none). The buffer
    /// stays owned by the module.
    #[unsafe(no_mangle)]
    pub extern "C" fn sluice_panic_message() -> u64 {
        match PANIC_MESSAGE.lock() {
            Ok(m) => ((m.as_ptr() as usize as u64) << 32) | m.len() as u64,
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::AbiResult;

    fn batch(values: &[&str]) -> Vec<u8> {
        let mut e = Encoder::new();
        e.count(values.len());
        for (i, v) in values.iter().enumerate() {
            e.record(RawRecord {
                offset: i as i64 + 10,
                timestamp: 0,
                key: None,
                value: v.as_bytes(),
            });
        }
        e.finish()
    }

    fn values(out: &[u8]) -> (Vec<String>, Option<(i64, String)>) {
        let AbiResult::Ok(payload) = abi::decode_result(out).unwrap() else {
            panic!("error result")
        };
        let mut d = Decoder::new(payload);
        let recs = d.records().unwrap();
        let failure = match d.u8("failure").unwrap() {
            0 => None,
            _ => Some((
                d.i64("o").unwrap(),
                String::from_utf8(d.bytes("m").unwrap().to_vec()).unwrap(),
            )),
        };
        d.end().unwrap();
        let vals = recs
            .iter()
            .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
            .collect();
        (vals, failure)
    }

    #[test]
    fn filter_keeps_matching_records() {
        let out = filter(&batch(&["apple", "kiwi", "banana"]), |r| {
            Ok(r.value.as_ref().contains(&b'a'))
        });
        assert_eq!(values(&out), (vec!["apple".into(), "banana".into()], None));
    }

    #[test]
    fn each_record_is_seen_whole_and_clones_of_lent_records_are_owned() {
        let keys = [Some(&b"first-key"[..]), None, Some(b"k"), Some(b"")];
        let values = ["a long value", "", "mid", "x"];
        let mut e = Encoder::new();
        e.count(keys.len());
        for (i, (key, value)) in keys.iter().zip(values).enumerate() {
            e.record(RawRecord {
                offset: i as i64,
                timestamp: 100 + i as i64,
                key: *key,
                value: value.as_bytes(),
            });
        }
        let seen = std::cell::RefCell::new(Vec::new());
        let mut input = e.finish();
        filter(&input, |r| {
            seen.borrow_mut().push(r.clone());
            Ok(true)
        });
        // The records were lent from the input; the clones must not be.
        input.fill(0);
        drop(input);
        let expected: Vec<Record> = keys
            .iter()
            .zip(values)
            .enumerate()
            .map(|(i, (key, value))| {
                Record::new(i as i64, 100 + i as i64, key.map(RecordData::from), value)
            })
            .collect();
        assert_eq!(seen.into_inner(), expected);
    }

    #[test]
    fn map_error_keeps_earlier_outputs_and_names_the_offset() {
        let out = map(&batch(&["1", "x", "3"]), |r| {
            let n: i32 = r.value.as_str()?.parse()?;
            Ok((None, (n * 2).to_string().into()))
        });
        let (vals, failure) = values(&out);
        assert_eq!(vals, vec!["2".to_string()]);
        let (offset, msg) = failure.unwrap();
        assert_eq!(offset, 11);
        assert!(msg.contains("invalid digit"), "{msg}");
    }

    #[test]
    fn aggregate_emits_running_accumulator() {
        let mut e = Encoder::new();
        e.bytes(b"10");
        let mut input = e.finish();
        input.extend(batch(&["1", "2"]));
        let out = aggregate(&input, |acc, r| {
            let a: i64 = acc.as_str()?.parse()?;
            let b: i64 = r.value.as_str()?.parse()?;
            Ok((a + b).to_string().into())
        });
        assert_eq!(values(&out), (vec!["11".into(), "13".into()], None));
    }

    #[test]
    fn malformed_input_is_an_error_result() {
        let out = filter(&[1, 2, 3], |_| Ok(true));
        assert!(matches!(
            abi::decode_result(&out).unwrap(),
            AbiResult::Err { offset: -1, .. }
        ));
    }

    #[test]
    fn look_back_sees_every_record_and_stops_at_the_first_error() {
        let seen = std::cell::RefCell::new(Vec::new());
        let out = look_back(&batch(&["1", "2", "3"]), |r| {
            seen.borrow_mut().push(r.offset());
            Ok(())
        });
        assert!(matches!(abi::decode_result(&out).unwrap(), AbiResult::Ok(p) if p.is_empty()));
        assert_eq!(seen.into_inner(), [10, 11, 12]);
        let out = look_back(&batch(&["1", "x", "3"]), |r| {
            r.value.as_str()?.parse::<i32>()?;
            Ok(())
        });
        let AbiResult::Err { offset, message } = abi::decode_result(&out).unwrap() else {
            panic!("an error was expected")
        };
        assert_eq!(offset, 11);
        assert!(message.contains("invalid digit"), "{message}");
        assert!(matches!(
            abi::decode_result(&look_back(&[9], |_| Ok(()))).unwrap(),
            AbiResult::Err { offset: -1, .. }
        ));
    }
}
