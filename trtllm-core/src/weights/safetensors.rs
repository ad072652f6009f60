//! Memory-mapped safetensors checkpoints: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. Headers are parsed and checked (JSON, dtype, offsets inside
//! the file) when the checkpoint is opened; tensor bytes are read only on `read`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::{DType, Error, Result, Tensor};

/// Header entry of one tensor.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub dtype: DType,
    pub shape: Vec<usize>,
    file: usize,
    start: usize,
    end: usize,
}

pub struct SafetensorsFiles {
    files: Vec<(PathBuf, Mmap)>,
    tensors: BTreeMap<String, TensorInfo>,
}

fn map_dtype(file: &Path, name: &str, d: safetensors::Dtype) -> Result<DType> {
    Ok(match d {
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::BF16 => DType::BF16,
        safetensors::Dtype::I32 => DType::I32,
        safetensors::Dtype::F8_E4M3 => DType::F8E4M3,
        other => {
            return Err(Error::checkpoint(file, format!("tensor `{name}` has unsupported dtype {other:?}")))
        }
    })
}

/// The largest safetensors JSON header we read (real checkpoints: a few MB).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Open a weights file: a regular file (a FIFO or device would block or never end) whose
/// header length fits [`MAX_HEADER_BYTES`], checked before the header is read.
fn open_regular(path: &Path) -> Result<std::fs::File> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::checkpoint(
            path,
            format!("not a regular file ({:?}); weights must be a file", meta.file_type()),
        ));
    }
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut n = [0u8; 8];
    if f.read_exact(&mut n).is_ok() {
        let len = u64::from_le_bytes(n);
        if len > MAX_HEADER_BYTES && len <= meta.len() {
            return Err(Error::checkpoint(
                path,
                format!("safetensors header of {len} bytes exceeds the limit of {MAX_HEADER_BYTES} bytes"),
            ));
        }
    }
    Ok(f)
}

impl SafetensorsFiles {
    /// Open the safetensors of an HF or engine directory: `model.safetensors`, the shards named by
    /// `model.safetensors.index.json`, or an explicit list of files.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        if index.exists() {
            let v = crate::error::read_json(&index)?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::checkpoint(&index, "missing `weight_map` object"))?;
            let mut names: Vec<String> = vec![];
            for (t, f) in map {
                let f = f
                    .as_str()
                    .ok_or_else(|| Error::checkpoint(&index, format!("`{t}`: file is not a string")))?;
                if !names.iter().any(|n| n == f) {
                    names.push(f.to_string());
                }
            }
            let files: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
            let me = Self::open_files(&files)?;
            for t in map.keys() {
                if !me.tensors.contains_key(t) {
                    return Err(Error::checkpoint(&index, format!("lists `{t}` but no shard holds it")));
                }
            }
            return Ok(me);
        }
        let single = dir.join("model.safetensors");
        if single.exists() {
            return Self::open_files(&[single]);
        }
        Err(Error::checkpoint(dir, "no model.safetensors or model.safetensors.index.json"))
    }

    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut tensors = BTreeMap::new();
        for (fi, path) in paths.iter().enumerate() {
            let f = open_regular(path)?;
            // SAFETY: the file is opened read-only and we never hand out `&mut` to its bytes; a
            // concurrent truncation by another process is outside what any mmap reader can guard.
            let mmap = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
            let (header_len, meta) = safetensors::SafeTensors::read_metadata(&mmap)
                .map_err(|e| Error::checkpoint(path, format!("bad safetensors header: {e}")))?;
            let data_len = mmap.len() - 8 - header_len;
            for (name, info) in meta.tensors() {
                let dtype = map_dtype(path, &name, info.dtype)?;
                let (start, end) = info.data_offsets;
                let want = info
                    .shape
                    .iter()
                    .try_fold(dtype.size_in_bytes(), |a, &d| a.checked_mul(d))
                    .ok_or_else(|| {
                        Error::checkpoint(path, format!("tensor `{name}`: shape {:?} overflows", info.shape))
                    })?;
                if end > data_len || start > end || end - start != want {
                    return Err(Error::checkpoint(
                        path,
                        format!("tensor `{name}`: data offsets {start}..{end} do not fit {want} bytes in a {data_len}-byte data section (truncated file?)"),
                    ));
                }
                let info = TensorInfo {
                    dtype,
                    shape: info.shape.clone(),
                    file: fi,
                    start: 8 + header_len + start,
                    end: 8 + header_len + end,
                };
                if tensors.insert(name.clone(), info).is_some() {
                    return Err(Error::checkpoint(path, format!("tensor `{name}` appears in two shards")));
                }
            }
            files.push((path.clone(), mmap));
        }
        Ok(SafetensorsFiles { files, tensors })
    }

    /// How many tensors the headers list.
    pub fn num_tensors(&self) -> usize {
        self.tensors.len()
    }
    /// Bytes of tensor data the headers list.
    pub fn data_bytes(&self) -> u64 {
        self.tensors.values().map(|i| (i.end - i.start) as u64).sum()
    }
    /// What the files hold, for [`ModelConfig::check_stored`](crate::config::ModelConfig::check_stored).
    pub fn stored(&self, shards: usize) -> crate::config::Stored<'_> {
        crate::config::Stored {
            file: self.first_file(),
            tensors: self.num_tensors(),
            bytes: self.data_bytes(),
            shards,
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
    /// The file a tensor lives in (for messages).
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.tensors.get(name).map(|i| self.files[i.file].0.as_path())
    }
    pub fn first_file(&self) -> &Path {
        self.files.first().map(|f| f.0.as_path()).unwrap_or(Path::new("(none)"))
    }

    /// Drop the mapped pages of tensor `name` from this process's resident set (they stay in
    /// the page cache and are read again if the tensor is). A streaming converter calls this
    /// after each read so its RSS stays near one tensor, not the whole mapped checkpoint.
    /// Best effort: does nothing where unsupported.
    pub fn release(&self, name: &str) {
        #[cfg(unix)]
        if let Some(info) = self.tensors.get(name) {
            // SAFETY: the mapping is private and read-only, so none of its pages was ever written
            // (copied-on-write): MADV_DONTNEED only unmaps them and the next access refaults the
            // same file contents. A reader of this or a neighbouring tensor (pages at the edges
            // are shared) sees identical bytes before and after; `read` copies out of the map.
            let _ = unsafe {
                self.files[info.file].1.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    info.start,
                    info.end - info.start,
                )
            };
        }
    }

    /// The stored bytes of one tensor (little-endian, in its stored dtype), borrowed from the
    /// mapping: pages are read from the file (or the page cache) as they are touched.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self.tensors.get(name).ok_or_else(|| Error::tensor(name, "not in checkpoint"))?;
        Ok(&self.files[info.file].1[info.start..info.end])
    }

    /// Unmap the files on a background thread: tearing down the page tables of a large
    /// checkpoint that was read whole takes a while (~30 ms per GB on the 2-core box), and
    /// nothing waits for it once the weights are loaded. Inline where no thread can be started.
    pub fn close_in_background(self) {
        // If the thread cannot start, the closure, and with it the files, drop right here.
        let _ = std::thread::Builder::new().name("trtllm-unmap".into()).spawn(move || drop(self));
    }

    /// Read one tensor in its stored dtype (one copy out of the mapping; `RawShard::to_host`).
    pub fn read(&self, name: &str) -> Result<Tensor> {
        let info = self.tensors.get(name).ok_or_else(|| Error::tensor(name, "not in checkpoint"))?;
        let raw = super::raw::RawShard {
            name: name.to_string(),
            shape: info.shape.clone(),
            dtype: info.dtype,
            parts: vec![self.bytes(name)?],
        };
        raw.to_host()
    }
}

/// Write tensors to `path` atomically (a temp file in the same directory, then rename).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    // Views borrow the tensors' own bytes (little-endian hosts): nothing is copied before the
    // serializer writes them.
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let (dt, bytes): (safetensors::Dtype, &[u8]) = match t.dtype() {
            DType::F32 => (safetensors::Dtype::F32, bytemuck::cast_slice(t.f32s()?)),
            DType::BF16 => (safetensors::Dtype::BF16, bytemuck::cast_slice(t.bf16s()?)),
            DType::F16 => (safetensors::Dtype::F16, bytemuck::cast_slice(t.f16s()?)),
            DType::I32 => (safetensors::Dtype::I32, bytemuck::cast_slice(t.i32s()?)),
            DType::F8E4M3 => (safetensors::Dtype::F8_E4M3, t.f8s()?),
            DType::Ggml => return Err(Error::tensor(name, "ggml blocks cannot be written to safetensors")),
        };
        let view = safetensors::tensor::TensorView::new(dt, t.shape().to_vec(), bytes)
            .map_err(|e| Error::tensor(name, e.to_string()))?;
        views.push((name.clone(), view));
    }
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, &metadata, &tmp)
        .map_err(|e| Error::checkpoint(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
