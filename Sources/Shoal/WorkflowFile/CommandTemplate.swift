import Foundation

/// An exec task's command, split into literal text and data placeholders.
///
/// Syntax (after `foreach` variables such as `{i}` have been substituted):
/// - `{dir:name}` with `dir` one of `in`, `out`, `inout`, `commutative`, `concurrent` and `name`
///   in `[A-Za-z0-9_.-]+` is a placeholder for the path of datum `name`.
/// - `{{` and `}}` are a literal `{` and `}`.
/// - A `{` that does not start `identifier:` or `identifier}` is literal, so `${HOME}`,
///   `find . -exec cat {} +` and `awk '{print $1}'` need no escaping; `{word}` where `word` is not a
///   foreach variable is an error (write `{{word}}` for literal braces).
///
/// One datum may appear several times. Directions merge as: equal directions are one access;
/// any mix of `in`, `out` and `inout` is one `inout` access (e.g. `sort {in:x} > {out:x}` reads
/// the current version and writes the next); `commutative` or `concurrent` mixed with anything
/// else is a conflict. Each placeholder keeps its own direction for rendering, so `{in:x}` is
/// the input path and `{out:x}` the output path even when the access is `inout`.
public struct CommandTemplate: Sendable, Hashable, CustomStringConvertible {
    /// One piece of the command.
    public enum Part: Sendable, Hashable {
        /// Text passed to the shell as is.
        case literal(String)
        /// Replaced by the (shell-quoted) path of `datum` as seen through `direction`.
        case placeholder(datum: String, direction: Direction)
    }

    /// Why a command could not be parsed.
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public enum Kind: Sendable, Hashable {
            case syntax
            case unknownDirection
            case unknownVariable
            case directionConflict
        }
        public var kind: Kind
        /// What is wrong, naming the offending placeholder.
        public var message: String
        /// Character offset of the offending `{` in the command text.
        public var offset: Int
        public var description: String { message }
    }

    /// The pieces, in order; adjacent literals are joined.
    public let parts: [Part]
    /// The data accesses, merged per datum, in order of first appearance.
    public let accesses: [DataAccess]

    /// Parses `text`. Throws `ParseError` for malformed placeholders and conflicting directions.
    public init(parsing text: String) throws(ParseError) {
        let chars = Array(text)
        let n = chars.count
        var parts: [Part] = []
        var literal = ""
        var i = 0
        func flush() {
            if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
        }
        while i < n {
            let c = chars[i]
            if c == "}" {
                literal.append("}")
                i += (i + 1 < n && chars[i + 1] == "}") ? 2 : 1
                continue
            }
            guard c == "{" else { literal.append(c); i += 1; continue }
            if i + 1 < n && chars[i + 1] == "{" { literal.append("{"); i += 2; continue }
            if i > 0 && chars[i - 1] == "$" { literal.append("{"); i += 1; continue }
            var j = i + 1
            while j < n, chars[j].isASCII, chars[j].isLetter || chars[j].isNumber || chars[j] == "_" {
                j += 1
            }
            let word = String(chars[(i + 1)..<j])
            guard WorkflowNames.isIdentifier(Substring(word)) else {
                literal.append("{"); i += 1; continue
            }
            let shown = String(chars[i..<min(n, j + 24)])
            if j == n {
                throw ParseError(kind: .syntax, message: "unclosed '{' in '\(shown)'", offset: i)
            }
            if chars[j] == "}" {
                throw ParseError(
                    kind: .unknownVariable,
                    message: "unknown foreach variable '{\(word)}' (write '{{' and '}}' for literal braces)",
                    offset: i)
            }
            guard chars[j] == ":" else { literal.append("{"); i += 1; continue }
            guard let direction = Direction(name: word) else {
                throw ParseError(
                    kind: .unknownDirection,
                    message: "unknown placeholder direction '\(word)'"
                        + (WorkflowNames.closest(to: word, in: Direction.allCases.map(\.description))
                            .map { " (did you mean '\($0)'?)" } ?? "")
                        + "; expected in, out, inout, commutative or concurrent",
                    offset: i)
            }
            var k = j + 1
            while k < n, WorkflowNames.isNameCharacter(chars[k]) { k += 1 }
            guard k < n, chars[k] == "}" else {
                let shownFull = String(chars[i..<min(n, k + 1)])
                throw ParseError(
                    kind: .syntax,
                    message: "unclosed '{' in placeholder '\(shownFull)' (data names use [A-Za-z0-9_.-], then '}')",
                    offset: i)
            }
            let name = String(chars[(j + 1)..<k])
            if name.isEmpty {
                throw ParseError(kind: .syntax, message: "empty data name in placeholder '{\(word):}'", offset: i)
            }
            if let problem = WorkflowNames.problem(name) {
                throw ParseError(
                    kind: .syntax, message: "invalid data name '\(WorkflowNames.shown(name))' in placeholder: it \(problem)",
                    offset: i)
            }
            flush()
            parts.append(.placeholder(datum: name, direction: direction))
            i = k + 1
        }
        flush()
        self.parts = parts
        self.accesses = try Self.mergeAccesses(parts)
    }

    /// Builds a template from parts (adjacent literals are kept as given).
    /// Throws `ParseError` (`.directionConflict`) if one datum has conflicting directions.
    public init(parts: [Part]) throws(ParseError) {
        self.parts = parts
        self.accesses = try Self.mergeAccesses(parts)
    }

    /// Merges two directions of one datum in one task, or nil if they conflict.
    public static func merge(_ a: Direction, _ b: Direction) -> Direction? {
        if a == b { return a }
        let plain: Set<Direction> = [.in, .out, .inout]
        if plain.contains(a) && plain.contains(b) { return .inout }
        return nil
    }

    private static func mergeAccesses(_ parts: [Part]) throws(ParseError) -> [DataAccess] {
        var accesses: [DataAccess] = []
        var index: [String: Int] = [:]
        for part in parts {
            guard case .placeholder(let datum, let direction) = part else { continue }
            if let at = index[datum] {
                guard let merged = merge(accesses[at].direction, direction) else {
                    throw ParseError(
                        kind: .directionConflict,
                        message: "datum '\(datum)' is used as both '\(accesses[at].direction)' and '\(direction)'",
                        offset: 0)
                }
                accesses[at].direction = merged
            } else {
                index[datum] = accesses.count
                accesses.append(DataAccess(datum: datum, direction: direction))
            }
        }
        return accesses
    }

    /// The command with every placeholder replaced by `paths(datum, placeholderDirection)`,
    /// shell-quoted (single quotes, only when the path has characters outside `[A-Za-z0-9_./@%+=:,-]`).
    public func render(paths: (String, Direction) -> String) -> String {
        var out = ""
        for part in parts {
            switch part {
            case .literal(let s): out += s
            case .placeholder(let datum, let direction): out += Self.shellQuote(paths(datum, direction))
            }
        }
        return out
    }

    /// `s` quoted for `/bin/sh` so that it is one word with no expansion.
    public static func shellQuote(_ s: String) -> String {
        let safe = !s.isEmpty
            && s.unicodeScalars.allSatisfy { u in
                (u.value >= 0x61 && u.value <= 0x7A) || (u.value >= 0x41 && u.value <= 0x5A)
                    || (u.value >= 0x30 && u.value <= 0x39) || "_./@%+=:,-".unicodeScalars.contains(u)
            }
        if safe { return s }
        return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// The template in its source syntax (literal braces escaped), so it parses back to itself.
    public var description: String {
        var out = ""
        for part in parts {
            switch part {
            case .literal(let s):
                out += s.replacingOccurrences(of: "{", with: "{{").replacingOccurrences(of: "}", with: "}}")
            case .placeholder(let datum, let direction): out += "{\(direction):\(datum)}"
            }
        }
        return out
    }
}

/// Replaces `{var}` with its value for every `var` in `bindings`; `{{` and `}}` are copied as is
/// (so an escaped `{{i}}` is not substituted). Values are inserted raw, not quoted. Variable names
/// are at most `WorkflowNames.maxVariableLength` characters (the parser refuses longer ones).
///
/// Returns nil as soon as the result would be longer than `limit` UTF-8 bytes, so a short text
/// with many `{i}` and a long value cannot build a huge string before it is checked.
func substituteForeachVariables(_ text: String, _ bindings: [String: String], limit: Int) -> String? {
    if bindings.isEmpty || !text.contains("{") { return text.utf8.count <= limit ? text : nil }
    let chars = Array(text)
    let n = chars.count
    var out = ""
    var bytes = 0
    var i = 0
    func append(_ s: String) -> Bool {
        bytes += s.utf8.count
        guard bytes <= limit else { return false }
        out += s
        return true
    }
    while i < n {
        let c = chars[i]
        if (c == "{" || c == "}") && i + 1 < n && chars[i + 1] == c {
            guard append(String(c) + String(c)) else { return nil }
            i += 2
            continue
        }
        if c == "{" {
            var j = i + 1
            while j < n, chars[j] != "}", chars[j] != "{", j - i <= WorkflowNames.maxVariableLength { j += 1 }
            if j < n, chars[j] == "}", let value = bindings[String(chars[(i + 1)..<j])] {
                guard append(value) else { return nil }
                i = j + 1
                continue
            }
        }
        guard append(String(c)) else { return nil }
        i += 1
    }
    return out
}
