//! How many connections a listener serves: plain data, derived from the descriptor limit and
//! the configuration; [`crate::http`] enforces it.

/// How many connections one listener serves at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most; past it, new connections wait in the kernel's backlog until
    /// one closes, while established ones keep being served.
    pub max_connections: usize,
    /// Open connections from one client address at most; past it, a new connection from that
    /// address is closed at once, so one client cannot take every slot.
    pub max_per_address: usize,
    /// Peers the per-address cap does not apply to: the trusted reverse proxies, through
    /// which every client arrives.
    pub exempt: Vec<crate::outbound::Cidr>,
}

/// Descriptors kept back from connections: the database, log files, outbound calls.
const RESERVED_DESCRIPTORS: u64 = 64;
/// Connections one address may hold by default.
pub const DEFAULT_PER_ADDRESS: usize = 256;

impl Limits {
    /// Limits derived from this process's descriptor limit: all of it but an eighth (at least
    /// [`RESERVED_DESCRIPTORS`]) for connections.
    pub fn from_descriptors() -> Limits {
        let soft = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        let reserve = (soft / 8).max(RESERVED_DESCRIPTORS);
        let max = soft.saturating_sub(reserve).clamp(16, 1 << 20) as usize;
        Limits {
            max_connections: max,
            max_per_address: DEFAULT_PER_ADDRESS.min(max),
            exempt: Vec::new(),
        }
    }
}
