//! The GGUF v2/v3 reader: header, metadata key/values (all types, arrays included), tensor
//! infos, alignment (`general.alignment`) and the data section, over a memory map. Every count,
//! length, dimension and offset is checked against the file before it is used, so a truncated or
//! malformed file is an error naming the file and the field or tensor, never a panic.
//! Strings that are not valid UTF-8 are kept with U+FFFD in place of the bad bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::ggml_type::GgmlType;
use super::value::{Value, ValueType};
use crate::{Error, Result};

/// "GGUF" as the first four bytes of the file.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's maximum number of tensor dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays nested deeper than this are refused (a malformed file could recurse without bound).
const MAX_DEPTH: usize = 8;

/// One tensor of the file.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` (ne0) is the innermost, contiguous dimension.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    pub n_elements: u64,
    /// Bytes of data; `None` for a type of unknown layout.
    pub n_bytes: Option<u64>,
}

impl TensorInfo {
    /// The row-major (PyTorch / safetensors) shape: the ggml dims reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: String) -> Error {
        Error::checkpoint(self.path, msg)
    }

    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(self.err(format!(
                "truncated: {} needs {n} bytes at offset {}, the file has {left} left",
                what(),
                self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that must fit the remaining bytes at `min_size` bytes per item.
    fn count(&mut self, min_size: usize, what: &dyn Fn() -> String) -> Result<usize> {
        let n = self.u64(what)?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.checked_mul(min_size as u64).is_none_or(|b| b > left) {
            return Err(
                self.err(format!("{}: count {n} does not fit the {left} bytes left in the file", what()))
            );
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let n = self.count(1, &|| format!("length of {}", what()))?;
        let bytes = self.take(n, what)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, ty: ValueType, depth: usize, what: &dyn Fn() -> String) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::Bool => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("{}: invalid bool byte {b}", what()))),
            },
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => {
                if depth >= MAX_DEPTH {
                    return Err(self.err(format!("{}: arrays nested deeper than {MAX_DEPTH}", what())));
                }
                let tid = self.u32(&|| format!("element type of {}", what()))?;
                let ety = ValueType::from_id(tid)
                    .ok_or_else(|| self.err(format!("{}: unknown array element type {tid}", what())))?;
                let n = self.count(ety.min_size(), &|| format!("length of {}", what()))?;
                let mut items = Vec::with_capacity(n);
                for i in 0..n {
                    items.push(self.value(ety, depth + 1, &|| format!("{} element {i}", what()))?);
                }
                Value::Array(ety, items)
            }
        })
    }
}

impl GgufFile {
    /// Open and parse `path` (memory-mapped; tensor data is read only when asked for).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the file is opened read-only and the map is only ever read through `&[u8]`;
        // like every mmap reader we cannot guard against another process truncating the file.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let (version, metadata, tensors, alignment, data_offset) = parse(&path, &map)?;
        let index = metadata.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
        let tensor_index = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(GgufFile { path, map, version, metadata, index, tensors, tensor_index, alignment, data_offset })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor of this file (bounds were checked when the file was opened).
    pub fn tensor_data(&self, t: &TensorInfo) -> Result<&[u8]> {
        let n = t.n_bytes.ok_or_else(|| {
            Error::checkpoint(&self.path, format!("tensor `{}` has type {} of unknown layout", t.name, t.ty))
        })?;
        let start = self.data_offset + t.offset;
        self.map.get(start as usize..(start + n) as usize).ok_or_else(|| {
            Error::checkpoint(&self.path, format!("tensor `{}` lies outside the file", t.name))
        })
    }

    /// Forget the metadata values whose key does not satisfy `keep` (`get` no longer finds
    /// them): a weight loader that has read the architecture keys drops the tokenizer's
    /// vocabulary and merges (~100k small strings, several MB) before it copies the tensors.
    pub fn retain_metadata(&mut self, keep: impl Fn(&str) -> bool) {
        self.metadata.retain(|(k, _)| keep(k));
        self.metadata.shrink_to_fit();
        self.index = self.metadata.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
    }

    /// Drop the pages of the header (metadata and tensor infos, already parsed into owned
    /// values) from this process's memory: for a file with a tokenizer that is several MB of
    /// strings mapped until the file is closed, beside the weight copies.
    pub fn release_header(&self) {
        #[cfg(unix)]
        if self.data_offset > 0 && self.data_offset as usize <= self.map.len() {
            // SAFETY: as in `release`: a read-only private file mapping, the range inside it;
            // a later read refaults the file's bytes.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    0,
                    self.data_offset as usize,
                )
            };
        }
    }

    /// Drop the pages of `t`'s data from this process's memory (a later read faults them in
    /// from the file again): a loader that has copied or converted a tensor calls it, so the
    /// file and its copies are not resident together.
    ///
    /// The range is widened by [`FAULT_AROUND`] on both sides: a read fault maps the page-cache
    /// pages around it too (the kernel's fault-around, 64 KiB), so reading a tensor maps the tail
    /// of the one before it again, and those pages would stay until the file is closed (5.6 MB
    /// of peak resident memory for SmolLM2's 272 tensors, docs/perf-notes.md).
    pub fn release(&self, t: &TensorInfo) {
        #[cfg(unix)]
        if let Some(n) = t.n_bytes {
            let at = self.data_offset.saturating_add(t.offset);
            let start = (at as usize).saturating_sub(FAULT_AROUND);
            let end = (at.saturating_add(n) as usize).saturating_add(FAULT_AROUND).min(self.map.len());
            let n = end.saturating_sub(start);
            if start.saturating_add(n) <= self.map.len() && n > 0 {
                // SAFETY: the map is a read-only private file mapping: MADV_DONTNEED only drops
                // its resident pages (the whole pages around the range, which may hold parts of
                // neighbouring tensors), and any later read sees the file's bytes again, as
                // before. The range is inside the map (checked above).
                let _ =
                    unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, n) };
            }
        }
    }

    /// An error about this file.
    pub fn error(&self, msg: impl Into<String>) -> Error {
        Error::checkpoint(&self.path, msg.into())
    }
}

/// Bytes around a released tensor that are released too (the kernel's default fault-around).
const FAULT_AROUND: usize = 64 << 10;

type Parsed = (u32, Vec<(String, Value)>, Vec<TensorInfo>, u64, u64);

fn parse(path: &Path, buf: &[u8]) -> Result<Parsed> {
    let mut c = Cursor { buf, pos: 0, path };
    let magic = c.array::<4>(&|| "the magic number".into())?;
    if magic != MAGIC {
        return Err(c.err(format!("not a GGUF file: magic {magic:02x?}, expected \"GGUF\"")));
    }
    let version = c.u32(&|| "the version".into())?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(c.err(
                "GGUF version 1 (32-bit counts) is not supported; re-convert with a newer llama.cpp".into(),
            ))
        }
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err(c.err("big-endian GGUF files are not supported".into()))
        }
        v => return Err(c.err(format!("unsupported GGUF version {v} (this reader knows 2 and 3)"))),
    }
    // Minimal encodings: a tensor info is at least 8 + 4 + 4 + 8 bytes, a key/value 8 + 4 + 1.
    let n_tensors = c.count(24, &|| "the tensor count".into())?;
    let n_kv = c.count(13, &|| "the metadata key/value count".into())?;

    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = c.string(&|| format!("the key of metadata entry {i}"))?;
        let tid = c.u32(&|| format!("the value type of metadata `{key}`"))?;
        let ty = ValueType::from_id(tid)
            .ok_or_else(|| c.err(format!("metadata `{key}`: unknown value type {tid}")))?;
        let value = c.value(ty, 0, &|| format!("metadata `{key}`"))?;
        if metadata.iter().any(|(k, _)| *k == key) {
            return Err(c.err(format!("metadata key `{key}` appears twice")));
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_int() {
            Some(a) if a > 0 && (a as u64).is_power_of_two() && a <= 1 << 30 => a as u64,
            _ => {
                return Err(
                    c.err(format!("metadata `general.alignment`: {} is not a power of two", v.describe()))
                )
            }
        },
    };

    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors);
    let mut names = std::collections::HashSet::new();
    for i in 0..n_tensors {
        let name = c.string(&|| format!("the name of tensor {i}"))?;
        let what = |f: &str| format!("{f} of tensor `{name}`");
        let n_dims = c.u32(&|| what("the dimension count"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(c.err(format!("tensor `{name}`: {n_dims} dimensions (expected 1..={MAX_DIMS})")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(c.u64(&|| what(&format!("dimension {d}")))?);
        }
        let ty = GgmlType::from_id(c.u32(&|| what("the type"))?);
        let offset = c.u64(&|| what("the data offset"))?;
        let n_elements = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| c.err(format!("tensor `{name}`: dimensions {dims:?} overflow")))?;
        let n_bytes = match ty.block() {
            None => None,
            Some((blk, bytes)) => {
                if dims[0] % blk as u64 != 0 {
                    return Err(c.err(format!(
                        "tensor `{name}`: innermost dimension {} is not a multiple of the {ty} block size {blk}",
                        dims[0]
                    )));
                }
                let n = (n_elements / blk as u64).checked_mul(bytes as u64).ok_or_else(|| {
                    c.err(format!("tensor `{name}`: dimensions {dims:?} of {ty} overflow in bytes"))
                })?;
                Some(n)
            }
        };
        if offset % alignment != 0 {
            return Err(c.err(format!(
                "tensor `{name}`: data offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        if !names.insert(name.clone()) {
            return Err(c.err(format!("tensor `{name}` appears twice")));
        }
        tensors.push(TensorInfo { name, dims, ty, offset, n_elements, n_bytes });
    }

    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    let data_len = (buf.len() as u64).saturating_sub(data_offset);
    for t in &tensors {
        if let Some(n) = t.n_bytes {
            if t.offset.checked_add(n).is_none_or(|end| end > data_len) {
                return Err(c.err(format!(
                    "truncated: tensor `{}` ({} {:?}) needs bytes {}..{} of the data section, which has {data_len}",
                    t.name,
                    t.ty,
                    t.dims,
                    t.offset,
                    t.offset.saturating_add(n)
                )));
            }
        }
    }
    Ok((version, metadata, tensors, alignment, data_offset))
}
