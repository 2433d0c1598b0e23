import ShoalCore

/// How the simulated network treats messages. May be changed mid-run (fault injection); a change
/// applies to messages sent afterwards.
public struct NetworkSettings: Sendable, Hashable, Codable {
    /// Base one-way latency.
    public var latency: Interval
    /// Mean of an exponentially distributed extra delay added to every copy of a message.
    public var jitter: Interval
    /// Bandwidth of each directed link; 0 means unlimited (no transmission time, no queueing).
    public var bandwidthBytesPerSecond: Int64
    /// Probability that a message is lost in transit (it still occupies its link).
    public var dropProbability: Double
    /// Probability that a delivered message is delivered a second time, with its own extra delay.
    public var duplicateProbability: Double
    /// Probability that a copy gets an extra delay uniform in [0, 10 × latency], so it may overtake
    /// or be overtaken by other messages on its link.
    public var reorderProbability: Double

    public init() {
        latency = .microseconds(200)
        jitter = .microseconds(50)
        bandwidthBytesPerSecond = 1_250_000_000
        dropProbability = 0
        duplicateProbability = 0
        reorderProbability = 0
    }

    /// A perfect network with the given latency: no jitter, unlimited bandwidth, no loss.
    public static func ideal(latency: Interval = .microseconds(200)) -> NetworkSettings {
        var s = NetworkSettings()
        s.latency = latency
        s.jitter = .zero
        s.bandwidthBytesPerSecond = 0
        return s
    }
}

/// What happened to the messages handed to the network so far.
///
/// Invariant: `sent + duplicated == delivered + dropped + partitioned`.
public struct NetworkStatistics: Sendable, Hashable, Codable {
    /// Calls to `send` (every message, whatever its fate).
    public var sent: Int = 0
    /// Copies scheduled for delivery, duplicates included.
    public var delivered: Int = 0
    /// Messages lost in transit (random loss).
    public var dropped: Int = 0
    /// Extra copies created by duplication.
    public var duplicated: Int = 0
    /// Messages lost because sender and receiver were on different sides of a partition.
    public var partitioned: Int = 0
    /// Payload bytes of every message handed to `send`.
    public var bytesSent: Int64 = 0

    public init() {}
}

/// The simulator's network: a pure, deterministic function from (seed, sequence of calls) to
/// delivery instants. It never schedules anything itself; the driver puts the returned instants on
/// its event queue.
///
/// Bandwidth: each directed link has a `busyUntil` instant. A message starts transmitting at
/// `max(now, busyUntil)`, takes `bytes / bandwidth`, and arrives after that plus latency plus
/// jitter (plus a reorder delay if drawn). Without jitter and reordering, a link is FIFO.
///
/// `now` is expected not to go backwards between calls (the driver's virtual clock); idle links
/// (`busyUntil <= now`) are forgotten from time to time, which is harmless under that rule.
public struct SimulatedNetwork: Sendable {
    public var settings: NetworkSettings
    public private(set) var statistics = NetworkStatistics()

    struct Link: Hashable, Sendable {
        var from: UInt64
        var to: UInt64
        func hash(into h: inout Hasher) {
            h.combine(from &* 0x9E37_79B9_7F4A_7C15 ^ to)
        }
    }

    private var generator: SeededGenerator
    /// When each directed link finishes transmitting what it was given. Looked up only; iterated
    /// only to forget idle links, which does not affect any result.
    private var busyUntil: [Link: Instant] = [:]
    private var pruneThreshold = 4096
    private var latestNow = Instant.zero
    /// Group index of each peer while partitioned; nil when the network is whole.
    private var groupOf: [PeerID: Int]? = nil
    /// The groups of the current partition, as given (nil when the network is whole).
    public private(set) var partitionGroups: [[PeerID]]? = nil

    public init(settings: NetworkSettings, seed: UInt64) {
        self.settings = settings
        self.generator = SeededGenerator(seed: seed)
    }

    /// Whether the network is currently split.
    public var isPartitioned: Bool { groupOf != nil }

    /// Number of directed links with remembered transmission state (for tests and reports).
    public var trackedLinkCount: Int { busyUntil.count }

    /// Decides the fate of one message sent now: the instants at which it is delivered
    /// (empty = lost; two = duplicated), in ascending order. A message to self is delivered at
    /// `now`, exactly once, whatever the settings and partitions.
    public mutating func send(from: PeerID, to: PeerID, bytes: Int, now: Instant) -> [Instant] {
        precondition(bytes >= 0, "negative message size")
        statistics.sent += 1
        statistics.bytesSent += Int64(bytes)
        if now > latestNow { latestNow = now }

        if from == to {
            statistics.delivered += 1
            return [now]
        }
        if !canReach(from, to) {
            statistics.partitioned += 1
            return []
        }

        // Transmission on the directed link (lost messages occupy the link too).
        let arrivedWhole: Instant
        let bandwidth = settings.bandwidthBytesPerSecond
        if bandwidth > 0 {
            let link = Link(from: from.raw, to: to.raw)
            let start = max(now, busyUntil[link] ?? now)
            let wide = Int64(bytes).multipliedFullWidth(by: 1_000_000_000)
            let transmission = bandwidth.dividingFullWidth(wide).quotient
            let end = Instant(nanoseconds: start.nanoseconds &+ transmission)
            if end > now {
                busyUntil[link] = end
                if busyUntil.count >= pruneThreshold { forgetIdleLinks() }
            }
            arrivedWhole = end
        } else {
            arrivedWhole = now
        }

        // A fixed number of draws per message, whatever the probabilities, so changing one
        // probability does not shift the random choices made for everything else.
        let lost = generator.nextUnitDouble() < settings.dropProbability
        let doubled = generator.nextUnitDouble() < settings.duplicateProbability
        let base = arrivedWhole + settings.latency
        let first = base + extraDelay()
        if lost {
            statistics.dropped += 1
            return []
        }
        if doubled {
            let second = base + extraDelay()
            statistics.delivered += 2
            statistics.duplicated += 1
            return first <= second ? [first, second] : [second, first]
        }
        statistics.delivered += 1
        return [first]
    }

    /// Jitter (exponential with mean `settings.jitter`) plus, with `reorderProbability`, a delay
    /// uniform in [0, 10 × latency]. Always three draws.
    private mutating func extraDelay() -> Interval {
        let uJitter = generator.nextUnitDouble()
        let uReorder = generator.nextUnitDouble()
        let uAmount = generator.nextUnitDouble()
        var extra: Int64 = 0
        let mean = settings.jitter.nanoseconds
        if mean > 0 {
            // -mean · ln(1 - u), u in [0, 1): finite, at most about 37 × mean.
            extra = Int64((-Double(mean) * portableLog(1 - uJitter)).rounded())
        }
        if uReorder < settings.reorderProbability {
            let span = Double(settings.latency.nanoseconds) * 10
            extra &+= Int64((span * uAmount).rounded())
        }
        return Interval(nanoseconds: extra)
    }

    private mutating func forgetIdleLinks() {
        let horizon = latestNow
        busyUntil = busyUntil.filter { $0.value > horizon }
        pruneThreshold = max(4096, busyUntil.count * 2)
    }

    /// Splits the cluster: messages between peers in different groups are lost (counted as
    /// `partitioned`); peers in no group are isolated from everyone (but can still message
    /// themselves). Replaces any previous partition. A peer may appear in at most one group.
    public mutating func partition(_ groups: [[PeerID]]) {
        var map: [PeerID: Int] = [:]
        for (index, group) in groups.enumerated() {
            for peer in group {
                let previous = map.updateValue(index, forKey: peer)
                precondition(previous == nil || previous == index, "\(peer) is in two partition groups")
            }
        }
        groupOf = map
        partitionGroups = groups
    }

    /// Ends the partition: every peer can reach every other again.
    public mutating func heal() {
        groupOf = nil
        partitionGroups = nil
    }

    /// Whether a message from `from` to `to` sent now would cross the network (it may still be
    /// dropped at random).
    public func canReach(_ from: PeerID, _ to: PeerID) -> Bool {
        if from == to { return true }
        guard let groupOf else { return true }
        guard let a = groupOf[from], let b = groupOf[to] else { return false }
        return a == b
    }
}

/// Natural logarithm of `x` in (0, 1] computed with IEEE-754 basic operations only (which are
/// correctly rounded everywhere), so delays replay bit for bit on every platform and libm.
/// Accurate to a few ulps, plenty for drawing delays.
func portableLog(_ x: Double) -> Double {
    precondition(x > 0 && x.isFinite)
    // x = m · 2^e with m in [√½, √2).
    var e = Double(x.exponent)
    var m = x.significand  // [1, 2)
    if m > 1.4142135623730951 {
        m *= 0.5
        e += 1
    }
    // ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172: 12 terms reach below 1e-18.
    let s = (m - 1) / (m + 1)
    let s2 = s * s
    var term = s
    var sum = 0.0
    var k = 1.0
    for _ in 0..<12 {
        sum += term / k
        term *= s2
        k += 2
    }
    return 2 * sum + e * 0.6931471805599453
}
