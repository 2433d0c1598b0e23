/// The ranges a scenario's numbers must lie in for a run to be well defined.
///
/// Virtual time is counted in `Int64` nanoseconds (about 292 years), and the driver computes start
/// times as join spread × peer index / peers, delays as latency plus up to ten latencies of
/// reordering, transmission times as bytes × 10⁹ / bandwidth: inside these limits none of that can
/// overflow (one day of virtual time × 100,000 peers is 8.64 × 10¹⁸ ns, under `Int64.max`). The
/// counts are bounded so a scenario cannot ask for more memory than any machine has.
///
/// `shoal simulate` refuses a scenario file outside these limits, naming the line and field,
/// before anything runs. `ClusterSimulation` assumes them: a `Scenario` built in code outside them
/// is a programmer error.
public enum ScenarioLimits {
    /// Peers in a scenario: 1 to this.
    public static let maxPeers = 100_000
    /// Virtual seconds a run lasts at most (one day); every time in a scenario is within it.
    public static let maxDurationSeconds: Double = 86_400
    /// Base latency and jitter mean, in microseconds (one minute).
    public static let maxLatencyMicros: Int64 = 60_000_000
    /// Link bandwidth in Mbit/s (1 Pbit/s); 0 means unlimited.
    public static let maxBandwidthMbps: Int64 = 1_000_000_000
    /// Bytes of one modelled value (a task output, an object): 1 GiB.
    public static let maxValueBytes: UInt64 = 1 << 30
    /// Membership protocol period, in milliseconds: 1 to this (one minute).
    public static let maxProtocolPeriodMs: Int64 = 60_000
    /// Task slots per peer (as `WorkSettings.clamped` allows).
    public static let maxSlots = 4_096
    /// Replicas of a persistent object (as `PlacementSettings.clamped` allows).
    public static let maxReplicas = 16
    /// Tasks over all of a scenario's workflows.
    public static let maxTasks = 10_000_000
    /// Workflows in a scenario.
    public static let maxWorkflows = 1_000
    /// Retries of a modelled failing task (as a workflow file's `retries`).
    public static let maxRetries: UInt16 = 100
    /// Modelled run time of one task, in microseconds (one day).
    public static let maxTaskMicros: Int64 = 86_400_000_000
    /// Puts of the object workload (each is scheduled when the run starts).
    public static let maxPuts = 10_000_000
    /// Bytes of workflow values one peer's shell may hold (`Scenario.maxHeldBytes`): 1 KiB to 1 TiB.
    public static let heldBytes: ClosedRange<UInt64> = 1_024...(1 << 40)
    /// Distinct keys of the object workload.
    public static let maxKeys = 1_000_000_000
}
