//! A streaming safetensors writer. The header is written first, from the names, dtypes and
//! shapes of every tensor the file will hold (known from the weight plan before any data is
//! read); tensor bytes are then appended one tensor at a time, in the declared order. Only one
//! tensor is ever in memory, so a converter's peak memory is a small multiple of the largest
//! tensor rather than of the model.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{DType, Error, Result, Tensor};

/// One tensor a file will hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorEntry {
    pub fn num_bytes(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64 * self.dtype.size_in_bytes() as u64
    }
}

/// safetensors' dtype spelling.
fn st_dtype(d: DType) -> &'static str {
    match d {
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::I32 => "I32",
        DType::F8E4M3 => "F8_E4M3",
        // Never declared: `write` refuses ggml tensors.
        DType::Ggml => "U8",
    }
}

/// Elements converted to little-endian bytes per `write` call.
const CHUNK: usize = 1 << 16;

pub struct StreamingWriter {
    path: PathBuf,
    file: File,
    entries: Vec<TensorEntry>,
    next: usize,
    buf: Vec<u8>,
    data_bytes: u64,
}

impl StreamingWriter {
    /// Create `path` and write the header for `entries`; their data must then be written in
    /// this order with [`write`](Self::write).
    pub fn create(
        path: &Path,
        entries: Vec<TensorEntry>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut header = serde_json::Map::new();
        if !metadata.is_empty() {
            header.insert(
                "__metadata__".into(),
                serde_json::to_value(metadata).map_err(|e| Error::checkpoint(path, e.to_string()))?,
            );
        }
        let mut offset = 0u64;
        for e in &entries {
            let end = offset + e.num_bytes();
            let info = serde_json::json!({ "dtype": st_dtype(e.dtype), "shape": e.shape, "data_offsets": [offset, end] });
            if header.insert(e.name.clone(), info).is_some() {
                return Err(Error::checkpoint(path, format!("tensor `{}` declared twice", e.name)));
            }
            offset = end;
        }
        let mut json = serde_json::to_vec(&header).map_err(|e| Error::checkpoint(path, e.to_string()))?;
        // The data section starts 8-byte aligned (as the reference implementation pads it).
        while json.len() % 8 != 0 {
            json.push(b' ');
        }
        let mut file = File::create(path).map_err(|e| Error::io(path, e))?;
        file.write_all(&(json.len() as u64).to_le_bytes()).map_err(|e| Error::io(path, e))?;
        file.write_all(&json).map_err(|e| Error::io(path, e))?;
        Ok(StreamingWriter { path: path.into(), file, entries, next: 0, buf: Vec::new(), data_bytes: offset })
    }

    /// The next tensor this writer expects, if any.
    pub fn expects(&self) -> Option<&TensorEntry> {
        self.entries.get(self.next)
    }

    /// Append the data of the next declared tensor; its name, dtype and shape must match.
    pub fn write(&mut self, name: &str, t: &Tensor) -> Result<()> {
        let Some(want) = self.entries.get(self.next) else {
            return Err(Error::checkpoint(
                &self.path,
                format!("tensor `{name}` written after the last declared tensor"),
            ));
        };
        if want.name != name || want.dtype != t.dtype() || want.shape != t.shape() {
            return Err(Error::checkpoint(
                &self.path,
                format!(
                    "tensor `{name}` ({}, {:?}) written where `{}` ({}, {:?}) was declared",
                    t.dtype(),
                    t.shape(),
                    want.name,
                    want.dtype,
                    want.shape
                ),
            ));
        }
        macro_rules! put {
            ($slice:expr) => {{
                for chunk in $slice.chunks(CHUNK) {
                    self.buf.clear();
                    for x in chunk {
                        self.buf.extend_from_slice(&x.to_le_bytes());
                    }
                    self.file.write_all(&self.buf).map_err(|e| Error::io(&self.path, e))?;
                }
            }};
        }
        match t.dtype() {
            DType::F32 => put!(t.f32s()?),
            DType::F16 => put!(t.f16s()?),
            DType::BF16 => put!(t.bf16s()?),
            DType::I32 => put!(t.i32s()?),
            DType::F8E4M3 => put!(t.f8s()?),
            DType::Ggml => return Err(Error::tensor(name, "ggml blocks cannot be written to a checkpoint")),
        }
        self.next += 1;
        Ok(())
    }

    /// Check that every declared tensor was written, flush and sync. Returns the data bytes.
    pub fn finish(self) -> Result<u64> {
        if let Some(missing) = self.entries.get(self.next) {
            return Err(Error::checkpoint(
                &self.path,
                format!(
                    "{} declared tensors were never written (first: `{}`)",
                    self.entries.len() - self.next,
                    missing.name
                ),
            ));
        }
        self.file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        Ok(self.data_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::SafetensorsFiles;

    #[test]
    fn round_trip_through_both_readers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.safetensors");
        let a = Tensor::from_f32((0..7 * 3).map(|i| i as f32 * 0.5 - 3.0).collect(), &[7, 3]).expect("a");
        let b = a.to_dtype(DType::BF16).expect("bf16");
        let c = Tensor::from_i32(vec![1, -2, 3], &[3]).expect("c");
        let entries = [("b.w", &b), ("a.w", &a), ("c", &c)]
            .iter()
            .map(|(n, t)| TensorEntry { name: n.to_string(), dtype: t.dtype(), shape: t.shape().to_vec() })
            .collect();
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        let mut w = StreamingWriter::create(&path, entries, &meta).expect("create");
        assert!(w.write("a.w", &a).is_err(), "out-of-order write must fail");
        w.write("b.w", &b).expect("b");
        w.write("a.w", &a).expect("a");
        w.write("c", &c).expect("c");
        w.finish().expect("finish");

        let bytes = std::fs::read(&path).expect("read");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("reference reader accepts it");
        assert_eq!(st.tensor("c").expect("c").shape(), &[3]);
        let files = SafetensorsFiles::open_files(&[path]).expect("open");
        assert_eq!(files.read("a.w").expect("a").f32s().expect("f32"), a.f32s().expect("f32"));
        assert_eq!(files.read("b.w").expect("b").bf16s().expect("bf16"), b.bf16s().expect("bf16"));
        assert_eq!(files.read("c").expect("c").i32s().expect("i32"), &[1, -2, 3]);
    }

    #[test]
    fn unfinished_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = vec![TensorEntry { name: "x".into(), dtype: DType::F32, shape: vec![2] }];
        let w =
            StreamingWriter::create(&dir.path().join("y.safetensors"), e, &BTreeMap::new()).expect("create");
        let err = w.finish().expect_err("must fail").to_string();
        assert!(err.contains("`x`"), "{err}");
    }
}
