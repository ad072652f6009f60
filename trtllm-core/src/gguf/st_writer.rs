//! A streaming safetensors writer: the header is written first from the declared names and
//! shapes, then each tensor's values are appended in declaration order (f32 in, cast on the way
//! out), so no more than one tensor is ever held in memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use crate::{Error, Result};

/// Dtype of the written tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutDType {
    #[default]
    F32,
    F16,
    BF16,
}

impl OutDType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "f32" | "float32" => OutDType::F32,
            "f16" | "float16" => OutDType::F16,
            "bf16" | "bfloat16" => OutDType::BF16,
            _ => return None,
        })
    }
    fn size(self) -> usize {
        match self {
            OutDType::F32 => 4,
            OutDType::F16 | OutDType::BF16 => 2,
        }
    }
    fn st_name(self) -> &'static str {
        match self {
            OutDType::F32 => "F32",
            OutDType::F16 => "F16",
            OutDType::BF16 => "BF16",
        }
    }
    /// The `torch_dtype` spelling.
    pub fn torch_name(self) -> &'static str {
        match self {
            OutDType::F32 => "float32",
            OutDType::F16 => "float16",
            OutDType::BF16 => "bfloat16",
        }
    }
}

pub struct SafetensorsWriter {
    path: PathBuf,
    out: BufWriter<File>,
    dtype: OutDType,
    /// `(name, elements)` in data order.
    entries: Vec<(String, usize)>,
    /// Tensor being written and elements of it written so far.
    current: usize,
    written: usize,
    buf: Vec<u8>,
}

impl SafetensorsWriter {
    /// Create `path` and write the header for `tensors` (`(name, shape)`, in data order).
    pub fn create(path: &Path, dtype: OutDType, tensors: &[(String, Vec<usize>)]) -> Result<Self> {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
        let mut offset = 0usize;
        let mut entries = Vec::with_capacity(tensors.len());
        for (name, shape) in tensors {
            let n: usize = shape.iter().product();
            let end = offset + n * dtype.size();
            let info = serde_json::json!({ "dtype": dtype.st_name(), "shape": shape, "data_offsets": [offset, end] });
            if header.insert(name.clone(), info).is_some() {
                return Err(Error::checkpoint(path, format!("tensor `{name}` declared twice")));
            }
            entries.push((name.clone(), n));
            offset = end;
        }
        let mut json = serde_json::to_vec(&header).map_err(|e| Error::checkpoint(path, e.to_string()))?;
        json.resize(json.len().div_ceil(8) * 8, b' ');
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let io = |e| Error::io(path, e);
        out.write_all(&(json.len() as u64).to_le_bytes()).map_err(io)?;
        out.write_all(&json).map_err(io)?;
        let mut me =
            SafetensorsWriter { path: path.into(), out, dtype, entries, current: 0, written: 0, buf: vec![] };
        me.skip_empty();
        Ok(me)
    }

    fn skip_empty(&mut self) {
        while self.current < self.entries.len() && self.written == self.entries[self.current].1 {
            self.current += 1;
            self.written = 0;
        }
    }

    /// Append values of the current tensor (any number at a time, never past its end).
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        let Some((name, n)) = self.entries.get(self.current) else {
            return Err(Error::checkpoint(&self.path, "more tensor data than declared"));
        };
        if self.written + values.len() > *n {
            return Err(Error::checkpoint(
                &self.path,
                format!("tensor `{name}`: more values than its {n} elements"),
            ));
        }
        self.buf.clear();
        match self.dtype {
            OutDType::F32 => self.buf.extend(values.iter().flat_map(|x| x.to_le_bytes())),
            OutDType::F16 => self.buf.extend(values.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes())),
            OutDType::BF16 => self.buf.extend(values.iter().flat_map(|x| bf16::from_f32(*x).to_le_bytes())),
        }
        self.out.write_all(&self.buf).map_err(|e| Error::io(&self.path, e))?;
        self.written += values.len();
        self.skip_empty();
        Ok(())
    }

    /// Check every declared tensor was written in full and flush.
    pub fn finish(mut self) -> Result<()> {
        if let Some((name, n)) = self.entries.get(self.current) {
            return Err(Error::checkpoint(
                &self.path,
                format!("tensor `{name}`: {} of {n} values written", self.written),
            ));
        }
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        self.out.get_ref().sync_all().map_err(|e| Error::io(&self.path, e))
    }
}
