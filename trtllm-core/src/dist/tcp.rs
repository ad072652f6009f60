//! Multi-process groups over TCP: a full mesh of streams between the `WORLD_SIZE` processes of a
//! launch ([`TcpGroup`]), the collectives of CPU ranks on it ([`TcpComm`]), point-to-point
//! tensors between pipeline stages, and the bytes an NCCL group needs to start (its unique id).
//!
//! Bootstrap: rank 0 listens on MASTER_PORT; every other rank binds a listener of its own, then
//! connects to rank 0 and sends `b"TRTLLM-RDV2"` + rank (u32 LE) + world (u32 LE) + its listener
//! port (u16 LE). When all have joined, rank 0 answers each with `b"OK"` + the address table
//! (for ranks 1..N: IP text length (u8) + IP text + port (u16 LE)), or `b"NO"`, a length (u32
//! LE) and the reason. Rank r then connects to ranks 1..r (sending `b"TRTLLM-PEER"` + its rank) and accepts
//! ranks r+1..N. Rank 0's stream to r is the bootstrap stream.
//!
//! Messages are a u64 LE byte length and the bytes. Every receive names the length it expects
//! (the receiver knows its batch), so a peer never makes this process allocate blindly.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::dist::{interleave_cols, to_device_of, Communicator, DistEnv};
use crate::{DType, Error, Result, Tensor};

const MAGIC: &[u8; 11] = b"TRTLLM-RDV2";
const PEER: &[u8; 11] = b"TRTLLM-PEER";
/// The dtypes a tensor message carries, by tag (its index); the values travel as f32.
const TAGS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

fn io_err(what: &str, e: std::io::Error) -> Error {
    Error::Parallel(format!("multi-process group: {what}: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Little-endian f32 values of a message (what `bytemuck::cast_slice` sent on this x86/ARM host).
fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// One stream per peer, split so a rank can send and receive at once.
struct Link {
    rx: Mutex<TcpStream>,
    tx: Mutex<TcpStream>,
}

/// This process's streams to every other process of the launch.
pub struct TcpGroup {
    rank: usize,
    world: usize,
    /// `links[r]`: the stream to rank r (`None` for this rank).
    links: Vec<Option<Link>>,
}

impl TcpGroup {
    /// Join the launch described by `env` (blocks until every rank has joined, at most the
    /// rendezvous timeout).
    pub fn connect(env: &DistEnv) -> Result<TcpGroup> {
        let timeout = Duration::from_secs(crate::env::knobs().rendezvous_timeout_s);
        Self::connect_within(env, timeout)
    }

    fn connect_within(env: &DistEnv, timeout: Duration) -> Result<TcpGroup> {
        let deadline = Instant::now() + timeout;
        let mut streams: Vec<Option<TcpStream>> = (0..env.world).map(|_| None).collect();
        if env.rank == 0 {
            serve_table(env, deadline, &mut streams)?;
        } else {
            join(env, deadline, &mut streams)?;
        }
        let mut links = Vec::with_capacity(env.world);
        for (r, s) in streams.into_iter().enumerate() {
            links.push(match s {
                None if r == env.rank => None,
                None => return Err(Error::Parallel(format!("multi-process group: no stream to rank {r}"))),
                Some(s) => {
                    s.set_nodelay(true).map_err(|e| io_err("socket", e))?;
                    s.set_read_timeout(Some(timeout)).map_err(|e| io_err("socket", e))?;
                    let tx = s.try_clone().map_err(|e| io_err("socket", e))?;
                    Some(Link { rx: Mutex::new(s), tx: Mutex::new(tx) })
                }
            });
        }
        Ok(TcpGroup { rank: env.rank, world: env.world, links })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    fn link(&self, peer: usize) -> Result<&Link> {
        self.links.get(peer).and_then(|l| l.as_ref()).ok_or_else(|| {
            Error::Parallel(format!("rank {}: no link to rank {peer} (world {})", self.rank, self.world))
        })
    }

    /// Send `bytes` to `peer` as one message.
    pub fn send(&self, peer: usize, bytes: &[u8]) -> Result<()> {
        let mut s = lock(&self.link(peer)?.tx);
        let what = |e| io_err(&format!("rank {} sending to rank {peer}", self.rank), e);
        s.write_all(&(bytes.len() as u64).to_le_bytes()).map_err(what)?;
        s.write_all(bytes).map_err(what)
    }

    /// The next message from `peer`, which must be one of the lengths in `allowed`.
    pub fn recv(&self, peer: usize, allowed: &[usize]) -> Result<Vec<u8>> {
        self.recv_if(peer, &|len| allowed.contains(&len), &format!("one of {allowed:?}"))
    }

    /// The next message from `peer`, of at most `max` bytes.
    pub fn recv_upto(&self, peer: usize, max: usize) -> Result<Vec<u8>> {
        self.recv_if(peer, &|len| len <= max, &format!("at most {max}"))
    }

    fn recv_if(&self, peer: usize, ok: &dyn Fn(usize) -> bool, expected: &str) -> Result<Vec<u8>> {
        let mut s = lock(&self.link(peer)?.rx);
        let what = |e: std::io::Error| {
            let why = match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    "nothing arrived within TRTLLM_RENDEZVOUS_TIMEOUT".to_string()
                }
                std::io::ErrorKind::UnexpectedEof => "it closed the connection (exited?)".to_string(),
                _ => e.to_string(),
            };
            Error::Parallel(format!("rank {} receiving from rank {peer}: {why}", self.rank))
        };
        let mut len = [0u8; 8];
        s.read_exact(&mut len).map_err(what)?;
        let len = u64::from_le_bytes(len) as usize;
        if !ok(len) {
            return Err(Error::Parallel(format!(
                "rank {} receiving from rank {peer}: a message of {len} bytes, expected {expected} (the ranks disagree about the step)",
                self.rank
            )));
        }
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).map_err(what)?;
        Ok(buf)
    }

    /// Every member's `x` (f32), in member order; `members` are ranks and include this one.
    pub fn all_gather(&self, members: &[usize], x: &[f32]) -> Result<Vec<Vec<f32>>> {
        let bytes: &[u8] = bytemuck::cast_slice(x);
        let others: Vec<usize> = members.iter().copied().filter(|&m| m != self.rank).collect();
        let send_all = || others.iter().try_for_each(|&m| self.send(m, bytes));
        let recv_all = || {
            members
                .iter()
                .map(|&m| match m == self.rank {
                    true => Ok(x.to_vec()),
                    false => Ok(f32s(&self.recv(m, &[bytes.len()])?)),
                })
                .collect::<Result<Vec<Vec<f32>>>>()
        };
        // Small messages fit in the socket buffers; large ones are sent from a second thread so
        // two ranks writing to each other cannot both block.
        if bytes.len() <= 16 << 10 {
            send_all()?;
            return recv_all();
        }
        std::thread::scope(|s| {
            let sender = s.spawn(send_all);
            let got = recv_all();
            let sent =
                sender.join().unwrap_or_else(|_| Err(Error::Parallel("sender thread panicked".into())));
            sent.and(got)
        })
    }

    /// `t` to `peer`: dtype tag, number of dims, dims (u64 LE), then the values as f32.
    pub fn send_tensor(&self, peer: usize, t: &Tensor) -> Result<()> {
        let tag = TAGS
            .iter()
            .position(|&d| d == t.dtype())
            .ok_or(Error::DType { op: "send_tensor", dtype: t.dtype() })? as u8;
        let mut head = vec![tag, t.shape().len() as u8];
        for &d in t.shape() {
            head.extend_from_slice(&(d as u64).to_le_bytes());
        }
        self.send(peer, &head)?;
        self.send(peer, bytemuck::cast_slice(&t.to_f32_vec()?))
    }

    /// A 2-D tensor from `peer` with `rows` rows and at most `max_cols` columns (a host tensor
    /// in the sender's dtype).
    pub fn recv_tensor(&self, peer: usize, rows: usize, max_cols: usize) -> Result<Tensor> {
        let head = self.recv(peer, &[2 + 16])?;
        let dim =
            |i: usize| u64::from_le_bytes(head[2 + 8 * i..10 + 8 * i].try_into().expect("8 bytes")) as usize;
        let (r, c) = (dim(0), dim(1));
        if head[1] != 2 || r != rows || c > max_cols {
            return Err(Error::Parallel(format!(
                "rank {}: rank {peer} sent a [{r}, {c}] tensor, expected {rows} rows of at most {max_cols}",
                self.rank
            )));
        }
        let dtype = *TAGS.get(head[0] as usize).ok_or_else(|| {
            Error::Parallel(format!("rank {}: rank {peer} sent dtype tag {}", self.rank, head[0]))
        })?;
        let data = f32s(&self.recv(peer, &[4 * r * c])?);
        Tensor::from_f32(data, &[r, c])?.to_dtype(dtype)
    }
}

fn accept_before(
    listener: &TcpListener,
    deadline: Instant,
    waiting_for: &dyn Fn() -> String,
) -> Result<TcpStream> {
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| io_err("peer socket", e))?;
                s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| io_err("peer socket", e))?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(Error::Parallel(format!(
                        "multi-process group: {} did not connect in time (TRTLLM_RENDEZVOUS_TIMEOUT)",
                        waiting_for()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(io_err("accept", e)),
        }
    }
}

fn connect_before(target: SocketAddr, deadline: Instant, who: &str) -> Result<TcpStream> {
    loop {
        match TcpStream::connect(target) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => {
                return Err(io_err(&format!("could not reach {who} at {target}"), e))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Rank 0: take every peer's hello, then hand out the address table.
fn serve_table(env: &DistEnv, deadline: Instant, streams: &mut [Option<TcpStream>]) -> Result<()> {
    let addr = format!("0.0.0.0:{}", env.master_port);
    let listener = TcpListener::bind(&addr).map_err(|e| io_err(&format!("rank 0 listening on {addr}"), e))?;
    listener.set_nonblocking(true).map_err(|e| io_err("listener", e))?;
    let mut table: Vec<Option<(IpAddr, u16)>> = vec![None; env.world];
    while let Some(missing) = (1..env.world).find(|&r| table[r].is_none()) {
        let waiting = || format!("rank {missing} (of WORLD_SIZE={})", env.world);
        let mut s = accept_before(&listener, deadline, &waiting)?;
        let mut hello = [0u8; 21];
        if s.read_exact(&mut hello).is_err() || &hello[..11] != MAGIC {
            continue; // not one of ours (a port scan, a stale client): ignore it
        }
        let (rank, world) = (u32_at(&hello, 11), u32_at(&hello, 15));
        let port = u16::from_le_bytes([hello[19], hello[20]]);
        let refuse = if world != env.world {
            Some(format!("rank {rank} has WORLD_SIZE={world}, rank 0 has {}", env.world))
        } else if rank == 0 || rank >= env.world {
            Some(format!("rank {rank} is not a valid peer rank for WORLD_SIZE={world}"))
        } else if table[rank].is_some() {
            Some(format!("rank {rank} joined twice"))
        } else {
            None
        };
        if let Some(why) = refuse {
            let mut msg = b"NO".to_vec();
            msg.extend_from_slice(&(why.len() as u32).to_le_bytes());
            msg.extend_from_slice(why.as_bytes());
            let _ = s.write_all(&msg);
            return Err(Error::Parallel(format!("multi-process group: {why}")));
        }
        let ip = s.peer_addr().map_err(|e| io_err("peer address", e))?.ip();
        table[rank] = Some((ip, port));
        streams[rank] = Some(s);
    }
    let mut msg = b"OK".to_vec();
    for (ip, port) in table.iter().skip(1).flatten() {
        let text = ip.to_string();
        msg.push(text.len() as u8);
        msg.extend_from_slice(text.as_bytes());
        msg.extend_from_slice(&port.to_le_bytes());
    }
    for (r, s) in streams.iter_mut().enumerate().skip(1) {
        let s = s.as_mut().expect("every peer joined");
        s.write_all(&msg).map_err(|e| io_err(&format!("sending the table to rank {r}"), e))?;
    }
    Ok(())
}

/// Rank r > 0: join rank 0, read the table, connect to ranks 1..r, accept ranks r+1..N.
fn join(env: &DistEnv, deadline: Instant, streams: &mut [Option<TcpStream>]) -> Result<()> {
    let master = format!("{}:{}", env.master_addr, env.master_port);
    let target = std::net::ToSocketAddrs::to_socket_addrs(&master)
        .map_err(|e| io_err(&format!("resolving MASTER_ADDR {master}"), e))?
        .next()
        .ok_or_else(|| {
            Error::Parallel(format!("multi-process group: MASTER_ADDR {master} resolves to nothing"))
        })?;
    let mut s = connect_before(target, deadline, "rank 0")?;
    let local_ip = s.local_addr().map_err(|e| io_err("local address", e))?.ip();
    let listener = TcpListener::bind((local_ip, 0)).map_err(|e| io_err("listening for peers", e))?;
    let port = listener.local_addr().map_err(|e| io_err("listener", e))?.port();
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&(env.rank as u32).to_le_bytes());
    hello.extend_from_slice(&(env.world as u32).to_le_bytes());
    hello.extend_from_slice(&port.to_le_bytes());
    s.write_all(&hello).map_err(|e| io_err("sending hello to rank 0", e))?;
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    s.set_read_timeout(Some(left)).map_err(|e| io_err("socket", e))?;
    let mut head = [0u8; 2];
    s.read_exact(&mut head).map_err(|e| io_err("reading rank 0's answer", e))?;
    if &head != b"OK" {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).map_err(|e| io_err("reading rank 0's refusal", e))?;
        let mut why = vec![0u8; u32_at(&len, 0).min(4096)];
        s.read_exact(&mut why).map_err(|e| io_err("reading rank 0's refusal", e))?;
        return Err(Error::Parallel(format!(
            "multi-process group refused by rank 0: {}",
            String::from_utf8_lossy(&why)
        )));
    }
    let mut table = Vec::with_capacity(env.world);
    for r in 1..env.world {
        let mut n = [0u8; 1];
        s.read_exact(&mut n).map_err(|e| io_err("reading the table", e))?;
        let mut entry = vec![0u8; n[0] as usize + 2];
        s.read_exact(&mut entry).map_err(|e| io_err("reading the table", e))?;
        let ip: IpAddr =
            std::str::from_utf8(&entry[..n[0] as usize]).ok().and_then(|t| t.parse().ok()).ok_or_else(
                || Error::Parallel(format!("multi-process group: rank 0 sent a bad address for rank {r}")),
            )?;
        let port = u16::from_le_bytes([entry[n[0] as usize], entry[n[0] as usize + 1]]);
        table.push(SocketAddr::new(ip, port));
    }
    streams[0] = Some(s);
    for peer in 1..env.rank {
        let mut p = connect_before(table[peer - 1], deadline, &format!("rank {peer}"))?;
        let mut msg = PEER.to_vec();
        msg.extend_from_slice(&(env.rank as u32).to_le_bytes());
        p.write_all(&msg).map_err(|e| io_err(&format!("greeting rank {peer}"), e))?;
        streams[peer] = Some(p);
    }
    listener.set_nonblocking(true).map_err(|e| io_err("listener", e))?;
    while let Some(missing) = (env.rank + 1..env.world).find(|&r| streams[r].is_none()) {
        let mut p = accept_before(&listener, deadline, &|| format!("rank {missing}"))?;
        let mut msg = [0u8; 15];
        if p.read_exact(&mut msg).is_err() || &msg[..11] != PEER {
            continue;
        }
        let from = u32_at(&msg, 11);
        if from <= env.rank || from >= env.world || streams[from].is_some() {
            return Err(Error::Parallel(format!(
                "multi-process group: rank {} was greeted by rank {from}",
                env.rank
            )));
        }
        streams[from] = Some(p);
    }
    Ok(())
}

/// The collectives of one tensor-parallel group of CPU ranks (the ranks of one pipeline stage)
/// on a [`TcpGroup`]: every rank sums the members' values in member order, so all ranks hold
/// bit-identical results — the same sums as the in-process [`super::LocalComm`].
pub struct TcpComm {
    group: Arc<TcpGroup>,
    /// Ranks of the group, in tensor-parallel order; this process is one of them.
    members: Vec<usize>,
}

impl TcpComm {
    pub fn new(group: Arc<TcpGroup>, members: Vec<usize>) -> Result<TcpComm> {
        if !members.contains(&group.rank()) || members.iter().any(|&m| m >= group.world()) {
            return Err(Error::Parallel(format!(
                "tensor-parallel members {members:?} must include rank {} and lie below WORLD_SIZE={}",
                group.rank(),
                group.world()
            )));
        }
        Ok(TcpComm { group, members })
    }
}

impl Communicator for TcpComm {
    fn tp_size(&self) -> usize {
        self.members.len()
    }

    fn all_reduce_tensor(&self, x: Tensor) -> Result<Tensor> {
        let parts = self.group.all_gather(&self.members, &x.to_f32_vec()?)?;
        let mut sum = parts[0].clone();
        for p in &parts[1..] {
            for (a, b) in sum.iter_mut().zip(p) {
                *a += *b;
            }
        }
        to_device_of(Tensor::from_f32(sum, x.shape())?, &x)
    }

    fn all_gather_cols(&self, x: &Tensor) -> Result<Tensor> {
        let (rows, local) = x.dims2("all_gather_cols")?;
        let parts = self.group.all_gather(&self.members, &x.to_f32_vec()?)?;
        to_device_of(interleave_cols(&parts, rows, local)?, x)
    }
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
