import Foundation
import Shoal

/// Registered tasks that example workflow files call with `task: name`.
public enum ExampleTasks {
    /// Arguments of `wordCount`.
    public struct WordCountArgs: Codable, Sendable {
        /// Words shorter than this are not counted.
        public var minLength: Int = 1
    }

    /// Counts the words of its one input and writes `word count` lines, most frequent first
    /// (ties by word), to its one output.
    public static let wordCount = TaskDefinition<WordCountArgs, Void>("wordCount") { args, context in
        let text = String(decoding: try context.inputBytes(at: 0), as: UTF8.self)
        var counts: [Substring: Int] = [:]
        for word in text.split(whereSeparator: { !$0.isLetter && !$0.isNumber && $0 != "'" })
        where word.count >= args.minLength {
            counts[word, default: 0] += 1
        }
        let lines = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { "\($0.key) \($0.value)\n" }.joined()
        let out = (0..<context.parameterCount).first { context.direction(at: $0) == .out }
        guard let out else { throw TaskContextError(task: "wordCount", message: "needs one out datum") }
        try context.setOutputBytes(at: out, Array(lines.utf8))
    }

    /// Arguments of `empty` (none).
    public struct NoArgs: Codable, Sendable {}

    /// Does nothing with what it reads: the task the throughput benchmarks run (`shoal bench
    /// peers`), so what is measured is the engine's path, not a body.
    public static let empty = TaskDefinition<NoArgs, Void>("empty") { _, _ in }

    /// Arguments of `spin`.
    public struct SpinArgs: Codable, Sendable {
        /// Task Bench kernel iterations (`TaskBench.kernel`).
        public var iterations: Int = 0
    }

    /// Task Bench's compute-bound kernel as a registered task for workflow files: reads its inputs
    /// (their first 8 bytes seed the kernel), runs `iterations` iterations and writes the 8-byte
    /// result to each output. What `shoal bench peers --metg` runs across peers.
    public static let spin = TaskDefinition<SpinArgs, Void>("spin") { args, context in
        var seed = 1.0
        for i in 0..<context.parameterCount where context.direction(at: i).reads {
            let bytes = try context.inputBytes(at: i)
            if bytes.count >= 8 {
                seed += Double(bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } & 0xFFFF) * 1e-9
            }
        }
        var out = TaskBench.kernel(iterations: args.iterations, seed: seed.truncatingRemainder(dividingBy: 1) + 1)
        let bytes = withUnsafeBytes(of: &out) { Array($0) }
        for i in 0..<context.parameterCount where context.direction(at: i).writes {
            try context.setOutputBytes(at: i, bytes)
        }
    }

    /// The examples' programs as scenario shapes (`ScenarioFile.load(path:registry:shapes:)`).
    public static let scenarioShapes = [CrossCorrelationWorkflow.scenarioShape]

    /// Every task the examples register.
    public static var registry: TaskRegistry {
        var r = TaskRegistry()
        r.register(wordCount)
        r.register(empty)
        r.register(spin)
        r.register(CrossCorrelationWorkflow.generateSpikeTrains)
        r.register(CrossCorrelationWorkflow.ccSurrogateRangeTask)
        r.register(CrossCorrelationWorkflow.gatherTask)
        return r
    }
}
