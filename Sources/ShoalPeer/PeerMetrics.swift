import CoreMetrics
import Prometheus

/// A peer's counters as swift-metrics `Counter`s over a Prometheus registry of the peer's own
/// (no process-wide bootstrap: two peers in one process keep two sets), written out in
/// Prometheus's text exposition format for the status reply.
///
/// What they count is counted where it happens: the pure machines keep their counters (they do no
/// IO and call no library), the transport's IO thread keeps its own, the actor its own. `update`
/// brings each swift-metrics counter up to its source's value by the difference since the last
/// call, so the counters only grow, as Prometheus expects.
struct PeerMetrics {
    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private var counters: [String: (counter: CoreMetrics.Counter, value: UInt64)] = [:]

    init() { factory = PrometheusMetricsFactory(registry: registry) }

    /// Brings counter `name` up to `value` (a counter whose source went back, a restarted
    /// machine's, stays where it was).
    mutating func update(_ name: String, help: String, to value: UInt64) {
        if counters[name] == nil {
            let handler = registry.makeCounter(name: name, help: help)
            counters[name] = (CoreMetrics.Counter(label: name, dimensions: [], handler: handler, factory: factory), 0)
        }
        let last = counters[name]!.value
        guard value > last else { return }
        counters[name]!.counter.increment(by: Int64(clamping: value - last))
        counters[name]!.value = value
    }

    /// Every counter, in Prometheus's text exposition format.
    func text() -> String { registry.emitToString() }
}
