/// A position in a workflow file: 1-based line and column, as Yams reports them.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    /// 1-based line number.
    public var line: Int
    /// 1-based column number (counted in Unicode scalars, as libyaml does).
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    /// `line:column`.
    public var description: String { "\(line):\(column)" }
}

/// Why a workflow file was rejected.
///
/// Every error names the file, the line and column, the task (when there is one) and the field,
/// so `description` reads like a compiler diagnostic:
/// `montage.yaml:12:5: task 'shout': unknown placeholder direction 'inn' in field 'exec'`.
/// `kind` lets callers (and tests) tell the cases apart without matching text.
public struct WorkflowFileError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The class of problem.
    public enum Kind: String, Sendable, Hashable {
        /// The file could not be read.
        case unreadable
        /// The text is not valid YAML (syntax error reported by libyaml).
        case yamlSyntax
        /// A node has the wrong shape (e.g. the top level is not a mapping, a list was expected).
        case wrongType
        /// A mapping has a key that is not known here.
        case unknownKey
        /// A required field is missing (e.g. `name`).
        case missingField
        /// A task has neither or both of `exec` and `task`, or fields of the other kind.
        case taskKind
        /// A `foreach` clause is malformed, empty, or expands beyond `maxTasks`.
        case badForeach
        /// Two tasks have the same name after expansion.
        case duplicateTask
        /// A task reads a datum that neither `data:` nor an earlier task defines.
        case undefinedDatum
        /// An output is never defined.
        case undefinedOutput
        /// A `data:` entry names a file that does not exist.
        case missingDataFile
        /// A `data:` file (or the workflow file) exists but is not a regular file (a directory,
        /// FIFO, device, socket, or a symbolic link to one), or cannot be opened for reading.
        case badDataFile
        /// The file, or what it expands to, is beyond a limit: its size, a task's `args` (YAML
        /// nodes after alias expansion, JSON bytes, nesting depth), an exec command's length, or
        /// the total size of the expanded tasks (see `WorkflowFile.ParseOptions`).
        case tooLarge
        /// An exec command has a malformed placeholder.
        case placeholderSyntax
        /// One datum appears with conflicting directions in one task.
        case directionConflict
        /// A name (workflow, datum, task, variable) has characters outside the allowed set, is
        /// empty, `.` or `..`, or is too long for where it is used (a file name, a store key).
        case invalidName
        /// A value is out of range or not of an accepted form (e.g. `retries: -1`, or more than
        /// `WorkflowFile.maxRetries`).
        case invalidValue
        /// A registered task name is not in the registry (see `WorkflowFile.validate(knownTasks:)`).
        case unknownTask
    }

    /// The class of problem.
    public var kind: Kind
    /// The workflow file as the caller named it.
    public var file: String
    /// Where in the file, when known.
    public var location: SourceLocation?
    /// The (expanded) task name, when the problem is inside a task.
    public var task: String?
    /// The field (YAML key) concerned, when there is one.
    public var field: String?
    /// What is wrong, without the position prefix.
    public var message: String

    public init(
        _ kind: Kind, file: String, location: SourceLocation?, task: String? = nil,
        field: String? = nil, message: String
    ) {
        self.kind = kind
        self.file = file
        self.location = location
        self.task = task
        self.field = field
        self.message = message
    }

    /// `file:line:column: task 'name': message in field 'field'`.
    public var description: String {
        var s = file
        if let location { s += ":\(location.line):\(location.column)" }
        s += ": "
        if let task { s += "task '\(task)': " }
        s += message
        if let field { s += " in field '\(field)'" }
        return s
    }
}

/// A registered-or-exec task's access to one datum, after placeholder merging.
public struct DataAccess: Sendable, Hashable, CustomStringConvertible {
    /// The datum's name.
    public var datum: String
    /// How the task uses it.
    public var direction: Direction

    public init(datum: String, direction: Direction) {
        self.datum = datum
        self.direction = direction
    }

    /// `direction:datum`, as in a placeholder.
    public var description: String { "\(direction):\(datum)" }
}

/// Data, task and variable names allowed in workflow files: `[A-Za-z0-9_.-]+`, not `.` or `..`,
/// at most `maxNameBytes` bytes.
///
/// A datum or task name becomes a file name: `scratch/in/<datum>`, `scratch/out/<datum>`, the
/// output `DIR/<datum>`, and the runner's version files and scratch folders `<name>.<counter>`
/// (and `<datum>.shared.<counter>`). The character set keeps `/`, NUL and spaces out; the length
/// bound keeps the longest of those (the name plus `.shared.` and a 20-digit counter) under the
/// 255-byte file-name limit of common file systems.
enum WorkflowNames {
    /// The longest datum or task name, in bytes (names are ASCII, so also characters).
    static let maxNameBytes = 200
    /// The longest foreach variable name: `substituteForeachVariables` looks this far for `}`.
    static let maxVariableLength = 63

    static func isNameCharacter(_ c: Character) -> Bool {
        guard c.isASCII, let a = c.asciiValue else { return false }
        switch a {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."),
            UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// Why `name` is not a valid datum or task name (a phrase to follow "it", e.g. "is empty"),
    /// or nil when it is valid. `.` and `..` are refused: they are paths.
    static func problem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name == "." || name == ".." { return "is a path ('.' or '..'), not a file name" }
        if !name.allSatisfy(isNameCharacter) { return "has characters other than letters, digits, '_', '.', '-'" }
        if name.utf8.count > maxNameBytes {
            return "is \(name.utf8.count) bytes long; names are at most \(maxNameBytes) bytes, as they become file names"
        }
        return nil
    }

    /// `name` for an error message: as is when short, else its first 40 characters and `…`.
    static func shown(_ name: String) -> String {
        name.count <= 60 ? name : String(name.prefix(40)) + "…"
    }

    /// Whether `name` is a valid foreach variable: `[A-Za-z_][A-Za-z0-9_]*`.
    static func isIdentifier(_ name: Substring) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first == "_" else {
            return false
        }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    /// The closest of `candidates` to `word`, if it is close enough to suggest.
    static func closest(to word: String, in candidates: [String]) -> String? {
        YAMLDiagnostics.closest(to: word, in: candidates)
    }
}
