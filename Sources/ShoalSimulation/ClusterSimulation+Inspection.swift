import ShoalCore

/// Read-only views into a simulation, for benchmarks and tools (kept out of the simulation loop's
/// file on purpose).
extension ClusterSimulation {
    /// The membership machine of `peer` while it is up (nil if it is down or never started).
    public func machine(of peer: PeerID) -> Membership? {
        let i = Int(peer.raw)
        guard i >= 0, i < peers.count, peers[i].up else { return nil }
        return peers[i].machine
    }

    /// Peers currently up.
    public var livePeerCount: Int { peers.reduce(0) { $0 + ($1.up ? 1 : 0) } }

    /// Sum of `Membership.estimatedHeapBytes` over the peers that are up.
    public var machinesEstimatedHeapBytes: Int {
        peers.reduce(0) { $0 + ($1.up ? ($1.machine?.estimatedHeapBytes ?? 0) : 0) }
    }
}
