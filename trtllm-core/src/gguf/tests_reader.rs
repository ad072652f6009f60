//! The reader on small GGUF files written here: every value type, arrays (nested too),
//! alignment, tensor infos and data; truncated and malformed files are errors naming the file
//! and the field or tensor.

use super::ggml_type::GgmlType;
use super::reader::GgufFile;
use super::value::{Value, ValueType};
use super::writer::GgufWriter;

fn sample(alignment: Option<u32>) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::String("llama".into()))
        .kv("u8", Value::U8(200))
        .kv("i8", Value::I8(-100))
        .kv("u16", Value::U16(60000))
        .kv("i16", Value::I16(-30000))
        .kv("u32", Value::U32(4_000_000_000))
        .kv("i32", Value::I32(-2_000_000_000))
        .kv("f32", Value::F32(1.5))
        .kv("bool", Value::Bool(true))
        .kv("u64", Value::U64(u64::MAX))
        .kv("i64", Value::I64(i64::MIN))
        .kv("f64", Value::F64(-2.25))
        .kv(
            "strs",
            Value::Array(ValueType::String, vec![Value::String("a b".into()), Value::String("ü".into())]),
        )
        .kv("ints", Value::Array(ValueType::I32, vec![Value::I32(3), Value::I32(-4)]))
        .kv(
            "nested",
            Value::Array(
                ValueType::Array,
                vec![Value::Array(ValueType::U8, vec![Value::U8(1), Value::U8(2)])],
            ),
        )
        .kv("empty", Value::Array(ValueType::F32, vec![]));
    if let Some(a) = alignment {
        w.kv("general.alignment", Value::U32(a));
    }
    w.tensor_f32("a.weight", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    w.tensor("b.weight", &[32], GgmlType::Q8_0, {
        let mut b = half::f16::from_f32(0.5).to_le_bytes().to_vec();
        b.extend((0..32).map(|i| i as u8));
        b
    });
    w
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

#[test]
fn reads_every_value_type_and_tensors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for alignment in [None, Some(64u32), Some(1)] {
        let bytes = sample(alignment).to_bytes();
        let g = GgufFile::open(write(&dir, "s.gguf", &bytes)).expect("open");
        assert_eq!(g.version, 3);
        assert_eq!(g.alignment, alignment.map_or(32, u64::from));
        assert_eq!(g.data_offset % g.alignment, 0);
        assert_eq!(g.get("u8"), Some(&Value::U8(200)));
        assert_eq!(g.get("i8"), Some(&Value::I8(-100)));
        assert_eq!(g.get("u16"), Some(&Value::U16(60000)));
        assert_eq!(g.get("i16"), Some(&Value::I16(-30000)));
        assert_eq!(g.opt_usize("u32").expect("u32"), Some(4_000_000_000));
        assert_eq!(g.get("i32"), Some(&Value::I32(-2_000_000_000)));
        assert_eq!(g.opt_f64("f32").expect("f32"), Some(1.5));
        assert_eq!(g.opt_bool("bool").expect("bool"), Some(true));
        assert_eq!(g.get("u64"), Some(&Value::U64(u64::MAX)));
        assert_eq!(g.get("i64"), Some(&Value::I64(i64::MIN)));
        assert_eq!(g.opt_f64("f64").expect("f64"), Some(-2.25));
        assert_eq!(g.opt_str_array("strs").expect("strs"), Some(vec!["a b", "ü"]));
        assert_eq!(g.opt_int_array("ints").expect("ints"), Some(vec![3, -4]));
        assert_eq!(g.get("nested").and_then(|v| v.as_array()).map(|a| a.len()), Some(1));
        assert_eq!(g.opt_f64_array("empty").expect("empty"), Some(vec![]));
        assert_eq!(g.architecture().expect("arch"), "llama");
        // Wrong types and missing keys name the key.
        let e = g.opt_str("u8").expect_err("type").to_string();
        assert!(e.contains("`u8`") && e.contains("s.gguf"), "{e}");
        assert!(g.req_usize("nope").expect_err("missing").to_string().contains("`nope` is missing"));

        let a = g.tensor("a.weight").expect("a");
        assert_eq!(
            (a.dims.clone(), a.shape(), a.ty, a.n_elements),
            (vec![3, 2], vec![2, 3], GgmlType::F32, 6)
        );
        let bytes = g.tensor_data(a).expect("data");
        let vals: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(vals, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = g.tensor("b.weight").expect("b");
        let mut out = vec![0f32; 32];
        super::dequantize(b.ty, g.tensor_data(b).expect("b data"), &mut out).expect("dequant");
        assert_eq!(out[31], 15.5);
    }
}

#[test]
fn every_truncation_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = sample(None).to_bytes();
    let g = GgufFile::open(write(&dir, "full.gguf", &bytes)).expect("full file opens");
    // The file ends with the last tensor's data; any shorter file is truncated somewhere.
    let end = (g.data_offset + g.tensor("b.weight").map(|t| t.offset + 34).unwrap_or(0)) as usize;
    for n in 0..end {
        let p = write(&dir, "cut.gguf", &bytes[..n]);
        match GgufFile::open(&p) {
            Ok(_) => panic!("truncated to {n} bytes: opened"),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("cut.gguf"), "{n}: {e}");
                assert!(
                    e.contains("truncated") || e.contains("does not fit") || e.contains("magic"),
                    "{n}: {e}"
                );
            }
        }
    }
}

/// Offset of the first occurrence of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).expect("needle")
}

fn open_err(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    match GgufFile::open(write(&dir, "bad.gguf", bytes)) {
        Ok(_) => panic!("malformed file opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_files_are_named_errors() {
    let good = sample(None).to_bytes();
    let patch = |at: usize, with: &[u8]| {
        let mut b = good.clone();
        b[at..at + with.len()].copy_from_slice(with);
        b
    };
    let has = |e: String, s: &str| assert!(e.contains(s) && e.contains("bad.gguf"), "expected `{s}` in: {e}");
    has(open_err(&patch(0, b"GGML")), "not a GGUF file");
    has(open_err(&patch(4, &1u32.to_le_bytes())), "version 1");
    has(open_err(&patch(4, &3u32.to_be_bytes())), "big-endian");
    has(open_err(&patch(4, &7u32.to_le_bytes())), "version 7");
    has(open_err(&patch(8, &u64::MAX.to_le_bytes())), "tensor count");
    has(open_err(&patch(16, &(1u64 << 40).to_le_bytes())), "key/value count");
    // The value type of `u8` (right after its key).
    let k = find(&good, b"\x02\x00\x00\x00\x00\x00\x00\x00u8") + 10;
    has(open_err(&patch(k, &77u32.to_le_bytes())), "metadata `u8`: unknown value type 77");
    let k = find(&good, b"bool") + 4 + 4;
    has(open_err(&patch(k, &[2])), "metadata `bool`: invalid bool");
    // The length of the `strs` array.
    let k = find(&good, b"strs") + 4 + 4 + 4;
    has(open_err(&patch(k, &(u64::MAX / 2).to_le_bytes())), "length of metadata `strs`");
    let k = find(&good, b"ints") + 4 + 4;
    has(open_err(&patch(k, &99u32.to_le_bytes())), "unknown array element type 99");
    // Tensor `a.weight`: n_dims, dims, type, offset follow its name.
    let t = find(&good, b"a.weight") + 8;
    has(open_err(&patch(t, &0u32.to_le_bytes())), "tensor `a.weight`: 0 dimensions");
    has(open_err(&patch(t, &9u32.to_le_bytes())), "tensor `a.weight`: 9 dimensions");
    let mut big = patch(t + 4, &u64::MAX.to_le_bytes());
    big[t + 12..t + 20].copy_from_slice(&u64::MAX.to_le_bytes());
    has(open_err(&big), "overflow");
    has(open_err(&patch(t + 4, &(1u64 << 30).to_le_bytes())), "truncated: tensor `a.weight`");
    has(open_err(&patch(t + 4 + 16 + 4, &3u64.to_le_bytes())), "not a multiple of the alignment");
    let tb = find(&good, b"b.weight") + 8;
    has(open_err(&patch(tb + 4, &31u64.to_le_bytes())), "not a multiple of the Q8_0 block size 32");
    // Alignment that is not a power of two.
    has(open_err(&sample(Some(48)).to_bytes()), "general.alignment");
    // Duplicate keys.
    let mut w = sample(None);
    has(open_err(&w.kv("u8", Value::U8(1)).to_bytes()), "`u8` appears twice");
}

#[test]
fn missing_file_names_it() {
    let e = GgufFile::open("/nonexistent/x.gguf").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("/nonexistent/x.gguf"), "{e}");
}
