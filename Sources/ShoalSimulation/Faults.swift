import ShoalCore

/// One fault the simulator driver injects into a scenario. Network faults can be applied with
/// `SimulatedNetwork.apply(_:)`; crashes and restarts are the driver's business.
public enum Fault: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The peer stops: its machines and in-flight messages to it are lost.
    case crash(peer: PeerID)
    /// The peer starts again, with its shard's contents (`keepStore`) or empty.
    case restart(peer: PeerID, keepStore: Bool)
    /// Splits the network (see `SimulatedNetwork.partition(_:)`); replaces any current partition.
    case partition(groups: [[PeerID]])
    /// Ends the partition.
    case heal
    /// Sets `NetworkSettings.dropProbability`.
    case setDrop(probability: Double)
    /// Sets `NetworkSettings.duplicateProbability`.
    case setDuplicate(probability: Double)

    public var description: String {
        switch self {
        case .crash(let peer): "crash \(peer)"
        case .restart(let peer, let keepStore): "restart \(peer)\(keepStore ? "" : " with an empty store")"
        case .partition(let groups): "partition \(groups.map { "[\($0.map(\.description).joined(separator: " "))]" }.joined(separator: " "))"
        case .heal: "heal"
        case .setDrop(let p): "drop \(p)"
        case .setDuplicate(let p): "duplicate \(p)"
        }
    }
}

/// A fault and when it happens, measured from the start of the scenario.
public struct ScheduledFault: Sendable, Hashable, Codable, CustomStringConvertible {
    public var at: Interval
    public var fault: Fault
    public init(at: Interval, fault: Fault) {
        self.at = at
        self.fault = fault
    }
    public var description: String { "\(at): \(fault)" }
}

/// The faults of a scenario, sorted by time; faults at the same time keep the order they were
/// given in (the driver applies them in this order).
public struct FaultPlan: Sendable, Hashable, Codable {
    public private(set) var faults: [ScheduledFault]

    public init(_ faults: [ScheduledFault] = []) {
        self.faults = FaultPlan.stablySorted(faults)
    }

    public var isEmpty: Bool { faults.isEmpty }

    /// When the last fault happens, if any.
    public var lastFaultTime: Interval? { faults.last?.at }

    /// Adds a fault after every fault scheduled at the same time or earlier.
    public mutating func add(_ fault: Fault, at: Interval) {
        let index = faults.firstIndex { $0.at > at } ?? faults.endIndex
        faults.insert(ScheduledFault(at: at, fault: fault), at: index)
    }

    /// The faults with `from <= at < to`, in order.
    public func faults(from: Interval, to: Interval) -> ArraySlice<ScheduledFault> {
        let lo = faults.firstIndex { $0.at >= from } ?? faults.endIndex
        let hi = faults[lo...].firstIndex { $0.at >= to } ?? faults.endIndex
        return faults[lo..<hi]
    }

    private enum CodingKeys: String, CodingKey { case faults }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(try container.decode([ScheduledFault].self, forKey: .faults))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(faults, forKey: .faults)
    }

    private static func stablySorted(_ faults: [ScheduledFault]) -> [ScheduledFault] {
        faults.enumerated()
            .sorted { $0.element.at != $1.element.at ? $0.element.at < $1.element.at : $0.offset < $1.offset }
            .map(\.element)
    }
}

extension FaultPlan {
    /// Fraction of the duration by which every fault of a swarm plan has been undone (all crashed
    /// peers restarted, the partition healed, loss and duplication back to their baselines), so
    /// liveness can be checked in the remaining time.
    public static let swarmQuietFraction = 0.7

    /// Draws a random plan ("swarm testing") from `generator`: a few crashes each followed by a
    /// restart, one partition that heals, and bursts of message loss and duplication. Everything
    /// happens in [5 %, 65 %] of `duration`; nothing is faulty from 70 % on.
    ///
    /// - `intensity`: 0 gives an empty plan; 1 is a lively plan (up to 3 crashes, 2 loss and 2
    ///   duplication bursts with probabilities up to 0.3 and 0.2); larger values are stronger
    ///   still (probabilities capped at 0.5, at most 4 bursts of each kind).
    /// - At most `(peers.count - 1) / 2` peers are down at once, so a majority survives.
    /// - The plan depends only on the set of peers (not their order), `duration`, `intensity`,
    ///   the baselines and the generator's state.
    public static func swarm(
        peers: [PeerID], duration: Interval, generator g: inout SeededGenerator, intensity: Double,
        baselineDrop: Double = 0, baselineDuplicate: Double = 0
    ) -> FaultPlan {
        var seen = Set<PeerID>()
        let all = peers.filter { seen.insert($0).inserted }.sorted()
        let n = all.count
        let x = intensity.isFinite ? max(0, intensity) : 0
        guard x > 0, n > 0, duration > .zero else { return FaultPlan() }

        func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * g.nextUnitDouble() }
        func below(_ k: Int) -> Int { Int(g.next() % UInt64(k)) }
        func time(_ fraction: Double) -> Interval {
            Interval(nanoseconds: Int64((Double(duration.nanoseconds) * fraction).rounded(.down)))
        }
        func shuffled(_ a: [PeerID]) -> [PeerID] {
            var a = a
            var i = a.count - 1
            while i > 0 {
                a.swapAt(i, below(i + 1))
                i -= 1
            }
            return a
        }

        var plan = FaultPlan()

        // Crashes of distinct peers, each restarted later.
        let crashCount = min((n - 1) / 2, Int((3 * x).rounded(.up)))
        for peer in shuffled(all).prefix(crashCount) {
            let down = uniform(0.05, 0.45)
            let up = down + uniform(0.05, 0.20)
            plan.add(.crash(peer: peer), at: time(down))
            plan.add(.restart(peer: peer, keepStore: g.nextUnitDouble() < 0.7), at: time(up))
        }

        // One partition into two sides, sometimes with one peer cut off from both; then heal.
        if n >= 2 {
            let order = shuffled(all)
            let isolateOne = n >= 3 && g.nextUnitDouble() < 0.25
            let members = isolateOne ? Array(order.dropLast()) : order
            let cut = 1 + below(members.count - 1)
            let groups = [Array(members[..<cut]).sorted(), Array(members[cut...]).sorted()]
            let start = uniform(0.10, 0.40)
            let end = start + uniform(0.05, 0.25)
            plan.add(.partition(groups: groups), at: time(start))
            plan.add(.heal, at: time(end))
        }

        // Loss and duplication bursts, each kind in non-overlapping slots of [5 %, 65 %].
        let bursts = min(4, max(1, Int((2 * x).rounded())))
        let slot = 0.60 / Double(bursts)
        for k in 0..<bursts {
            let s = 0.05 + slot * Double(k)
            let start = s + uniform(0, 0.5) * slot
            let end = start + uniform(0.2, 0.5) * slot
            plan.add(.setDrop(probability: min(0.5, x * uniform(0.05, 0.30))), at: time(start))
            plan.add(.setDrop(probability: baselineDrop), at: time(end))
        }
        for k in 0..<bursts {
            let s = 0.05 + slot * Double(k)
            let start = s + uniform(0, 0.5) * slot
            let end = start + uniform(0.2, 0.5) * slot
            plan.add(.setDuplicate(probability: min(0.5, x * uniform(0.02, 0.20))), at: time(start))
            plan.add(.setDuplicate(probability: baselineDuplicate), at: time(end))
        }
        return plan
    }
}

extension SimulatedNetwork {
    /// Applies the network part of a fault (partition, heal, loss and duplication) and returns
    /// true; returns false and does nothing for crashes and restarts, which the driver handles.
    @discardableResult
    public mutating func apply(_ fault: Fault) -> Bool {
        switch fault {
        case .partition(let groups): partition(groups)
        case .heal: heal()
        case .setDrop(let p): settings.dropProbability = p
        case .setDuplicate(let p): settings.duplicateProbability = p
        case .crash, .restart: return false
        }
        return true
    }
}
