import Foundation
import Testing

@testable import Shoal

let exampleWorkflow = """
    name: shout-twice
    data:                          # initial values: inline text, or a file to read
      greeting: "hello\\n"
      corpus: { file: words.txt }
    tasks:
      - name: shout                # exec task: placeholders name the data and their direction
        exec: "tr a-z A-Z < {in:greeting} > {out:loud}"
      - name: twice
        exec: "cat {in:loud} {in:loud} > {out:loud}"   # writing loud again makes loud@v2
      - name: count                # registered Swift task
        task: wordCount
        args: { minLength: 3 }
        in: [corpus]
        out: [counts]
      - name: part-{i}             # one task per i
        foreach: { i: "0..<4" }
        exec: "echo {i} >> {commutative:log}"
    outputs: [loud, counts, log]   # written to --output-dir DIR as DIR/<name>

    """

private func acc(_ d: Direction, _ name: String) -> DataAccess { DataAccess(datum: name, direction: d) }

private func command(_ call: TaskCall) -> CommandTemplate? {
    if case .exec(let c) = call.kind { return c }
    return nil
}

@Suite("WorkflowFile parsing")
struct WorkflowFileParseTests {
    @Test func exampleParsesToExpandedCalls() throws {
        let wf = try loadWorkflow(exampleWorkflow, files: ["words.txt": "a bb ccc dddd\n"])
        #expect(wf.name == "shout-twice")
        #expect(wf.tasks.map(\.name) == ["shout", "twice", "count", "part-0", "part-1", "part-2", "part-3"])
        #expect(wf.tasks.map(\.location.line) == [6, 8, 10, 15, 15, 15, 15])
        #expect(wf.tasks[0].accesses == [acc(.in, "greeting"), acc(.out, "loud")])
        // {in:loud} twice is one `in`; with {out:loud} it reads v1 and writes v2: one `inout`.
        #expect(wf.tasks[1].accesses == [acc(.inout, "loud")])
        #expect(wf.tasks[2].accesses == [acc(.in, "corpus"), acc(.out, "counts")])
        for i in 0..<4 {
            let t = wf.tasks[3 + i]
            #expect(t.accesses == [acc(.commutative, "log")])
            #expect(command(t)?.description == "echo \(i) >> {commutative:log}")
            #expect(t.bindings == [ForeachBinding(variable: "i", value: "\(i)")])
        }
        #expect(command(wf.tasks[0])?.parts == [
            .literal("tr a-z A-Z < "), .placeholder(datum: "greeting", direction: .in), .literal(" > "),
            .placeholder(datum: "loud", direction: .out),
        ])
        guard case .registered(let task, let argsJSON) = wf.tasks[2].kind else {
            Issue.record("count is not a registered task")
            return
        }
        #expect(task == "wordCount")
        #expect(String(decoding: argsJSON, as: UTF8.self) == #"{"minLength":3}"#)
        struct Args: Codable, Equatable { var minLength: Int }
        #expect(try JSONDecoder().decode(Args.self, from: Data(argsJSON)) == Args(minLength: 3))

        #expect(wf.data.map(\.name) == ["greeting", "corpus", "log"])
        #expect(wf.data[0].value == .inline(Array("hello\n".utf8)))
        guard case .file(let corpusPath) = wf.data[1].value else {
            Issue.record("corpus is not a file")
            return
        }
        #expect(corpusPath.hasSuffix("/words.txt"))
        #expect(try String(contentsOfFile: corpusPath, encoding: .utf8) == "a bb ccc dddd\n")
        #expect(wf.data[2].isImplicit && wf.data[2].value == .inline([]))
        #expect(wf.outputs.map(\.name) == ["loud", "counts", "log"])
        #expect(wf.tasks.allSatisfy { $0.retries == 0 && $0.onFailure == .fail })
        try wf.validate(knownTasks: ["wordCount"])
        #expect(wf.summary.contains("twice (line 8): exec \"cat {in:loud} {in:loud} > {out:loud}\" [inout:loud]"))
    }

    @Test func retriesAndFailurePolicy() throws {
        let wf = try loadWorkflow("""
            name: w
            tasks:
              - name: a
                exec: "echo hi > {out:x}"
                retries: 2
                onFailure: cancel-successors
              - name: b
                exec: "cat {in:x} > {out:y}"
                onFailure: ignore
            """)
        #expect(wf.tasks.map(\.retries) == [2, 0])
        #expect(wf.tasks.map(\.onFailure) == [.cancelSuccessors, .ignore])
    }

    @Test func foreachCartesianProductInDeclarationOrder() throws {
        let wf = try loadWorkflow("""
            name: w
            tasks:
              - name: t-{a}-{b}
                foreach: { a: [x, y], b: "1...2" }
                task: kernel
                args:
                  level: "{b}"
                  plain: n{b}
                  tag: "{a}"
                  nested: [ "{a}{b}" ]
                out: ["res-{a}-{b}"]
            """)
        #expect(wf.tasks.map(\.name) == ["t-x-1", "t-x-2", "t-y-1", "t-y-2"])
        #expect(wf.tasks.map { $0.accesses } == [
            [acc(.out, "res-x-1")], [acc(.out, "res-x-2")], [acc(.out, "res-y-1")], [acc(.out, "res-y-2")],
        ])
        guard case .registered(_, let json) = wf.tasks[3].kind else { return }
        #expect(String(decoding: json, as: UTF8.self) == #"{"level":"2","plain":"n2","tag":"y","nested":["y2"]}"#)
    }

    @Test func foreachVariablesInsidePlaceholders() throws {
        let wf = try loadWorkflow("""
            name: w
            tasks:
              - name: split-{k}
                foreach: { k: [a, b] }
                exec: "echo {k} > {out:part-{k}}; echo {{k}}"
              - name: join
                exec: "cat {in:part-a} {in:part-b} > {out:all}"
            """)
        #expect(wf.tasks.map(\.accesses) == [[acc(.out, "part-a")], [acc(.out, "part-b")], [acc(.in, "part-a"), acc(.in, "part-b"), acc(.out, "all")]])
        #expect(command(wf.tasks[1])?.render { d, _ in "/o/\(d)" } == "echo b > /o/part-b; echo {k}")
    }

    @Test func unquotedSubstitutedArgsAreRetyped() throws {
        let wf = try loadWorkflow("""
            name: w
            tasks:
              - name: t{i}
                foreach: { i: "7...7" }
                task: k
                args:
                  n: 1{i}
                  s: "1{i}"
                  f: 2.5
                  b: true
                  z: null
                  text: "a \\"q\\"\\n"
            """)
        guard case .registered(_, let json) = wf.tasks[0].kind else { return }
        #expect(String(decoding: json, as: UTF8.self) == #"{"n":17,"s":"17","f":2.5,"b":true,"z":null,"text":"a \"q\"\n"}"#)
    }

    @Test func foreachLimit() {
        let yaml = """
            name: w
            tasks:
              - name: first
                exec: "echo > {out:x}"
              - name: t-{i}-{j}
                foreach: { i: "0..<100", j: "0..<100" }
                exec: "echo {i} {j} >> {commutative:x}"
            """
        #expect(workflowError(yaml, options: .init(maxTasks: 10_001)) == nil)
        let e = workflowError(yaml, options: .init(maxTasks: 10_000))
        #expect(e?.kind == .badForeach)
        #expect(e?.field == "foreach")
        #expect(e?.description.contains("wf.yaml:6:") == true)
        #expect(e?.description.contains("maxTasks (10000)") == true)
        // The default limit (1,000,000) is checked before anything is expanded.
        let huge = workflowError("""
            name: w
            tasks:
              - name: t-{i}
                foreach: { i: "0..<2000000" }
                exec: "echo {i}"
            """)
        #expect(huge?.kind == .badForeach)
        #expect(huge?.description.contains("maxTasks (1000000)") == true)
    }

    @Test func placeholderMergeAndConflict() throws {
        let t = try CommandTemplate(parsing: "cat {in:a} {in:a} {in:b} > {out:c}; sort {in:c} > {out:c}")
        #expect(t.accesses == [acc(.in, "a"), acc(.in, "b"), acc(.inout, "c")])
        let same = try CommandTemplate(parsing: "echo >> {commutative:l}; echo >> {commutative:l}")
        #expect(same.accesses == [acc(.commutative, "l")])
        #expect(throws: CommandTemplate.ParseError.self) {
            try CommandTemplate(parsing: "cat {in:x} >> {commutative:x}")
        }
        let e = workflowError("""
            name: w
            data: { x: "1" }
            tasks:
              - name: mix
                exec: "cat {in:x} >> {concurrent:x}"
            """)
        #expect(e?.kind == .directionConflict)
        #expect(e?.description == "\(e!.file):5:11: task 'mix': datum 'x' is used as both 'in' and 'concurrent' in field 'exec'")
        let r = workflowError("""
            name: w
            data: { x: "1" }
            tasks:
              - name: mix
                task: k
                in: [x]
                commutative: [x]
            """)
        #expect(r?.kind == .directionConflict)
        #expect(r?.field == "commutative")
        #expect(r?.location?.line == 7)
    }

    @Test func literalBracesAndRendering() throws {
        let t = try CommandTemplate(parsing: "awk '{print $1}' {in:a} | sed 's/${HOME}//' > {out:b}; find . -exec true {} +; echo {{x}}")
        #expect(t.accesses == [acc(.in, "a"), acc(.out, "b")])
        let rendered = t.render { datum, direction in direction == .in ? "/tmp/my dir/\(datum)" : "/tmp/o/\(datum)" }
        #expect(rendered == "awk '{print $1}' '/tmp/my dir/a' | sed 's/${HOME}//' > /tmp/o/b; find . -exec true {} +; echo {x}")
        #expect(try CommandTemplate(parsing: t.description) == t)
        #expect(CommandTemplate.shellQuote("it's") == #"'it'\''s'"#)
    }
}

@Suite("WorkflowFile errors")
struct WorkflowFileErrorTests {
    /// Checks kind, `wf.yaml:line:column` (column when given) and field of the error for `yaml`.
    func expectError(
        _ yaml: String, _ kind: WorkflowFileError.Kind, line: Int, column: Int? = nil, field: String?,
        contains: String? = nil, files: [String: String] = [:], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let e = workflowError(yaml, files: files) else {
            Issue.record("expected a \(kind) error", sourceLocation: sourceLocation)
            return
        }
        let prefix = column.map { "wf.yaml:\(line):\($0): " } ?? "wf.yaml:\(line):"
        #expect(e.kind == kind, "\(e)", sourceLocation: sourceLocation)
        #expect(e.description.contains(prefix), "\(e)", sourceLocation: sourceLocation)
        #expect(e.description.hasPrefix(e.file + ":"), sourceLocation: sourceLocation)
        #expect(e.field == field, "\(e)", sourceLocation: sourceLocation)
        if let field { #expect(e.description.contains("field '\(field)'"), "\(e)", sourceLocation: sourceLocation) }
        if let contains { #expect(e.description.contains(contains), "\(e)", sourceLocation: sourceLocation) }
    }
    typealias SourceLocation = Testing.SourceLocation

    @Test func unknownPlaceholderDirectionReadsLikeACompiler() {
        let e = workflowError("""
            name: w
            data: { greeting: hi }
            tasks:
              - name: shout
                exec: "tr a-z A-Z < {inn:greeting} > {out:loud}"
            """)
        #expect(e?.description == "\(e!.file):5:25: task 'shout': unknown placeholder direction 'inn' (did you mean 'in'?); expected in, out, inout, commutative or concurrent in field 'exec'")
    }

    @Test func yamlSyntaxErrors() {
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"echo\n", .yamlSyntax, line: 5, field: nil, contains: "YAML syntax error")
        expectError("name: w\ntasks: [\n  - a\n", .yamlSyntax, line: 3, field: nil, contains: "YAML syntax error")
        expectError("name: w\nname: v\ntasks: []\n", .yamlSyntax, line: 1, field: nil, contains: "duplicate key 'name'")
    }

    @Test func topLevelShape() {
        expectError("- a\n- b\n", .wrongType, line: 1, column: 1, field: nil, contains: "top level must be a mapping")
        expectError("just text\n", .wrongType, line: 1, field: nil, contains: "top level must be a mapping")
        expectError("name: w\ntaks: []\n", .unknownKey, line: 2, column: 1, field: "taks", contains: "(did you mean 'tasks'?)")
        expectError("tasks: []\n", .missingField, line: 1, field: "name", contains: "missing workflow 'name'")
        expectError("name: w\n", .missingField, line: 1, field: "tasks")
    }

    @Test func taskShape() {
        expectError("name: w\ntasks:\n  - name: a\n    exce: \"true\"\n", .unknownKey, line: 4, column: 5, field: "exce", contains: "(did you mean 'exec'?)")
        expectError("name: w\ntasks:\n  - exec: \"true\"\n", .missingField, line: 3, column: 5, field: "name", contains: "task has no 'name'")
        expectError("name: w\ntasks:\n  - name: a\n    retries: 1\n", .taskKind, line: 3, field: "exec", contains: "neither 'exec' nor 'task'")
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"true\"\n    task: k\n", .taskKind, line: 5, field: "task", contains: "both 'exec' and 'task'")
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"true\"\n    in: [x]\n", .taskKind, line: 5, field: "in")
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"true\"\n    retries: -1\n", .invalidValue, line: 5, field: "retries")
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"true\"\n    onFailure: ignor\n", .invalidValue, line: 5, field: "onFailure", contains: "did you mean 'ignore'")
    }

    @Test func foreachErrors() {
        expectError("name: w\ntasks:\n  - name: a{i}\n    foreach: { i: \"0..4\" }\n    exec: \"true\"\n", .badForeach, line: 4, field: "foreach", contains: "bad foreach range '0..4'")
        expectError("name: w\ntasks:\n  - name: a{i}\n    foreach: { i: \"3..<3\" }\n    exec: \"true\"\n", .badForeach, line: 4, field: "foreach", contains: "is empty")
        expectError("name: w\ntasks:\n  - name: a{i}\n    foreach: { i: [] }\n    exec: \"true\"\n", .badForeach, line: 4, field: "foreach")
        expectError("name: w\ntasks:\n  - name: a{i}\n    foreach: { i: { x: 1 } }\n    exec: \"true\"\n", .badForeach, line: 4, field: "foreach")
    }

    @Test func duplicateTaskNames() {
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"true\"\n  - name: a\n    exec: \"true\"\n", .duplicateTask, line: 5, field: "name", contains: "first defined at line 3")
        expectError("name: w\ntasks:\n  - name: same\n    foreach: { i: \"0..<2\" }\n    exec: \"echo {i}\"\n", .duplicateTask, line: 3, field: "name")
        expectError("name: w\ntasks:\n  - name: t-{j}\n    foreach: { i: \"0..<2\" }\n    exec: \"echo {i}\"\n", .invalidName, line: 3, field: "name", contains: "foreach variable")
    }

    @Test func undefinedData() {
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"cat {in:nothing} > {out:y}\"\n", .undefinedDatum, line: 4, field: "exec", contains: "undefined datum 'nothing'")
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"sort -o {inout:y} {inout:y}\"\n", .undefinedDatum, line: 4, field: "exec", contains: "undefined datum 'y'")
        // A later task's write does not define the datum for an earlier reader.
        expectError("name: w\ntasks:\n  - name: a\n    task: k\n    in:\n      - early\n  - name: b\n    exec: \"echo > {out:early}\"\n", .undefinedDatum, line: 6, column: 9, field: "in", contains: "undefined datum 'early'")
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"echo > {out:y}\"\noutputs: [y, z]\n", .undefinedOutput, line: 5, field: "outputs", contains: "output 'z' is never defined")
    }

    @Test func dataErrors() {
        expectError("name: w\ndata:\n  corpus: { file: missing.txt }\ntasks: []\n", .missingDataFile, line: 3, field: "data.corpus.file", contains: "data file 'missing.txt' does not exist")
        expectError("name: w\ndata:\n  corpus: { fil: words.txt }\ntasks: []\n", .unknownKey, line: 3, field: "fil", contains: "did you mean 'file'")
        expectError("name: w\ndata:\n  bad name: x\ntasks: []\n", .invalidName, line: 3, column: 3, field: "data", contains: "invalid datum name 'bad name'")
        expectError("name: w\ntasks:\n  - name: a\n    task: k\n    out: [a/b]\n", .invalidName, line: 5, field: "out", contains: "invalid datum name 'a/b'")
        #expect(workflowError("name: w\ndata:\n  corpus: { file: words.txt }\ntasks: []\n", files: ["words.txt": "x"]) == nil)
    }

    @Test func placeholderSyntaxErrors() {
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"echo hi > {out:x\"\n", .placeholderSyntax, line: 4, column: 22, field: "exec", contains: "unclosed '{'")
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"echo hi > {out:x y}\"\n", .placeholderSyntax, line: 4, field: "exec", contains: "unclosed '{'")
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"echo hi > {out:}\"\n", .placeholderSyntax, line: 4, field: "exec", contains: "empty data name")
        expectError("name: w\ntasks:\n  - name: a\n    exec: \"echo {nope}\"\n", .placeholderSyntax, line: 4, field: "exec", contains: "unknown foreach variable '{nope}'")
    }

    @Test func unknownRegisteredTask() throws {
        let wf = try loadWorkflow("name: w\ntasks:\n  - name: a\n    exec: \"true\"\n  - name: b\n    task: wordCont\n")
        #expect(throws: Never.self) { try wf.validate(knownTasks: ["wordCont"]) }
        do {
            try wf.validate(knownTasks: ["wordCount", "other"])
            Issue.record("expected an unknown task error")
        } catch {
            #expect(error.kind == .unknownTask)
            #expect(error.description == "\(error.file):5:5: task 'b': unknown registered task 'wordCont' (did you mean 'wordCount'?) in field 'task'")
        }
    }

    @Test func unreadableFile() {
        #expect(throws: WorkflowFileError.self) { try WorkflowFile.load(path: "/nonexistent/wf.yaml") }
    }
}
