//! A minimal GGUF v3 writer: metadata and raw tensor data, aligned as the reader expects.
//! `GgufWriter` builds a file in memory (the tests' hand-made files); `GgufStreamWriter` writes
//! the header first and then each tensor as it is made (`convert --quantize q8_0 | q4_k`), into
//! a temporary sibling renamed into place by `finish`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::ggml_type::GgmlType;
use super::reader::{DEFAULT_ALIGNMENT, MAGIC};
use super::value::Value;
use crate::{Error, Result};

#[derive(Default)]
pub struct GgufWriter {
    kv: Vec<(String, Value)>,
    /// `(name, ggml dims (ne0 first), type, bytes)`.
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(t, items) => {
            out.extend_from_slice(&t.id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                put_value(out, it);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

/// `(name, ggml dims, type, data bytes)` of one declared tensor.
type Decl<'a> = (&'a str, &'a [u64], GgmlType, usize);

/// Magic, version, counts, metadata and tensor infos, padded to `align` (data offsets packed in
/// declaration order, each padded to `align`).
fn header(kv: &[(String, Value)], tensors: &[Decl], align: usize) -> Vec<u8> {
    let pad = |n: usize| n.div_ceil(align) * align;
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        put_str(&mut out, k);
        out.extend_from_slice(&v.value_type().id().to_le_bytes());
        put_value(&mut out, v);
    }
    let mut offset = 0usize;
    for (name, dims, ty, len) in tensors {
        put_str(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in *dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ty.id().to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = pad(offset + len);
    }
    out.resize(pad(out.len()), 0);
    out
}

/// The data bytes of a tensor of `ty` with ggml dims `dims`, if its rows are whole blocks.
pub fn tensor_bytes(ty: GgmlType, dims: &[u64]) -> Option<usize> {
    let (per, bytes) = ty.block()?;
    let row = *dims.first()? as usize;
    if !row.is_multiple_of(per) {
        return None;
    }
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?))?;
    (n / per).checked_mul(bytes)
}

/// A GGUF written tensor by tensor (see the module docs).
pub struct GgufStreamWriter {
    file: Option<std::io::BufWriter<std::fs::File>>,
    tmp: PathBuf,
    path: PathBuf,
    /// `(name, bytes)` of each declared tensor, in order.
    sizes: Vec<(String, usize)>,
    next: usize,
    align: usize,
}

impl GgufStreamWriter {
    /// Start `path` (written as `.NAME.tmp-PID` beside it): metadata `kv`, and the tensors in the
    /// order their data will be given, `(name, ggml dims, type)`.
    pub fn create(
        path: &Path,
        kv: &[(String, Value)],
        tensors: &[(String, Vec<u64>, GgmlType)],
    ) -> Result<Self> {
        let mut decl = Vec::with_capacity(tensors.len());
        for (name, dims, ty) in tensors {
            let len = tensor_bytes(*ty, dims).ok_or_else(|| {
                Error::checkpoint(path, format!("tensor `{name}`: dims {dims:?} are not whole {ty} blocks"))
            })?;
            decl.push((name.as_str(), dims.as_slice(), *ty, len));
        }
        let align = DEFAULT_ALIGNMENT as usize;
        let head = header(kv, &decl, align);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = GgufStreamWriter {
            file: Some(std::io::BufWriter::with_capacity(1 << 20, f)),
            tmp,
            path: path.to_path_buf(),
            sizes: decl.iter().map(|(n, _, _, l)| (n.to_string(), *l)).collect(),
            next: 0,
            align,
        };
        w.put(&head)?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        let f = self.file.as_mut().ok_or_else(|| Error::checkpoint(&self.tmp, "already finished"))?;
        f.write_all(b).map_err(|e| Error::io(&self.tmp, e))
    }

    /// The data of the next declared tensor (its declared size exactly).
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        let Some((name, len)) = self.sizes.get(self.next).cloned() else {
            return Err(Error::checkpoint(&self.path, "more tensors written than declared"));
        };
        if data.len() != len {
            return Err(Error::checkpoint(
                &self.path,
                format!("tensor `{name}`: {} bytes given, {len} declared", data.len()),
            ));
        }
        self.put(data)?;
        let pad = len.div_ceil(self.align) * self.align - len;
        self.put(&vec![0u8; pad])?;
        self.next += 1;
        Ok(())
    }

    /// Flush, sync and rename into place (replacing a file of that name).
    pub fn finish(mut self) -> Result<()> {
        if self.next != self.sizes.len() {
            return Err(Error::checkpoint(
                &self.path,
                format!("{} of {} tensors written", self.next, self.sizes.len()),
            ));
        }
        let f = self.file.take().ok_or_else(|| Error::checkpoint(&self.tmp, "already finished"))?;
        let f = f.into_inner().map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for GgufStreamWriter {
    /// An unfinished file is removed.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn kv(&mut self, key: &str, value: Value) -> &mut Self {
        self.kv.push((key.to_string(), value));
        self
    }

    /// Add a tensor: `dims` in ggml order (innermost first), `data` its encoded bytes.
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors.push((name.to_string(), dims.to_vec(), ty, data));
        self
    }

    /// Add an F32 tensor.
    pub fn tensor_f32(&mut self, name: &str, dims: &[u64], data: &[f32]) -> &mut Self {
        let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensor(name, dims, GgmlType::F32, bytes)
    }

    fn alignment(&self) -> u64 {
        self.kv
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_int())
            .map_or(DEFAULT_ALIGNMENT, |a| a as u64)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.alignment() as usize;
        let decl: Vec<_> =
            self.tensors.iter().map(|(n, d, t, data)| (n.as_str(), d.as_slice(), *t, data.len())).collect();
        let mut out = header(&self.kv, &decl, align);
        for (_, _, _, data) in &self.tensors {
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(align) * align, 0);
        }
        out
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_bytes()).map_err(|e| Error::io(path, e))
    }
}
