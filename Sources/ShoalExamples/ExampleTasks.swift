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

    /// The examples' programs as scenario shapes (`ScenarioFile.load(path:registry:shapes:)`).
    public static let scenarioShapes = [CrossCorrelationWorkflow.scenarioShape]

    /// Every task the examples register.
    public static var registry: TaskRegistry {
        var r = TaskRegistry()
        r.register(wordCount)
        r.register(empty)
        r.register(CrossCorrelationWorkflow.generateSpikeTrains)
        r.register(CrossCorrelationWorkflow.ccSurrogateRangeTask)
        r.register(CrossCorrelationWorkflow.gatherTask)
        return r
    }
}
