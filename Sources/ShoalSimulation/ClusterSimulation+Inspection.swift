import ShoalCore

/// Read-only views into a simulation, for benchmarks and tools (kept out of the simulation loop's
/// file on purpose).
extension ClusterSimulation {
    /// The protocol machine of `peer` while it is up (nil if it is down or never started).
    public func machine(of peer: PeerID) -> PeerMachine? {
        let i = Int(peer.raw)
        guard i >= 0, i < peers.count, peers[i].up else { return nil }
        return peers[i].machine
    }

    /// Peers currently up.
    public var livePeerCount: Int { peers.reduce(0) { $0 + ($1.up ? 1 : 0) } }

    /// Sum of `Membership.estimatedHeapBytes` over the peers that are up (the membership part of
    /// each peer's machine; the malloc figure of `shoal bench simulator` counts everything).
    public var membershipEstimatedHeapBytes: Int {
        peers.reduce(0) { $0 + ($1.up ? ($1.machine?.membership.estimatedHeapBytes ?? 0) : 0) }
    }

    /// Bytes of values the shell of `peer` holds in memory (an ended workflow's are dropped with
    /// its versions).
    public func heldPayloadBytes(at peer: Int) -> Int { peers[peer].shell?.payloads.heldBytes ?? 0 }
}
