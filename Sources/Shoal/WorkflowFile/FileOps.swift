import CProcess

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file-system call that failed: the operation, the path and the system's words for it, meant
/// to be read by a person ("cannot create 'o/y': Permission denied").
public struct FileError: Error, Sendable, Hashable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var reason: String

    public init(_ operation: String, _ path: String, reason: String) {
        self.operation = operation
        self.path = path
        self.reason = reason
    }

    /// From the current `errno`.
    init(_ operation: String, _ path: String, errno code: Int32 = errno) {
        self.init(operation, path, reason: String(cString: strerror(code)))
    }

    public var description: String { "cannot \(operation) '\(path)': \(reason)" }
}

/// What sits at a path, without following a final symbolic link.
public enum FileKind: Sendable, Hashable, CustomStringConvertible {
    case regular, directory, symbolicLink, fifo, socket, characterDevice, blockDevice, other

    public var description: String {
        switch self {
        case .regular: "a regular file"
        case .directory: "a directory"
        case .symbolicLink: "a symbolic link"
        case .fifo: "a FIFO (named pipe)"
        case .socket: "a socket"
        case .characterDevice: "a character device"
        case .blockDevice: "a block device"
        case .other: "a special file"
        }
    }

    init(mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFREG: self = .regular
        case S_IFDIR: self = .directory
        case S_IFLNK: self = .symbolicLink
        case S_IFIFO: self = .fifo
        case S_IFSOCK: self = .socket
        case S_IFCHR: self = .characterDevice
        case S_IFBLK: self = .blockDevice
        default: self = .other
        }
    }
}

/// Identity and last change of a file, to tell whether anything wrote it: a write, truncation,
/// `chmod` or replacement changes the inode, size, modification or status-change time, and the
/// status-change time cannot be set back by a program.
struct FileFingerprint: Hashable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var mode: UInt32
    var modified: timespec
    var changed: timespec

    init(path: String) throws(FileError) {
        var s = stat()
        guard lstat(path, &s) == 0 else { throw FileError("inspect", path) }
        device = UInt64(s.st_dev)
        inode = UInt64(s.st_ino)
        size = Int64(s.st_size)
        mode = UInt32(s.st_mode)
        modified = s.st_mtim
        changed = s.st_ctim
    }

    static func == (a: Self, b: Self) -> Bool {
        a.device == b.device && a.inode == b.inode && a.size == b.size && a.mode == b.mode
            && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
            && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
    }

    func hash(into h: inout Hasher) {
        h.combine(inode)
        h.combine(size)
    }
}

/// Small, direct file-system operations for the exec path: no Foundation, errors in plain words.
enum FileOps {
    /// What is at `path` (not following a final symlink), or nil when nothing is.
    static func kind(_ path: String) -> FileKind? {
        var s = stat()
        guard lstat(path, &s) == 0 else { return nil }
        return FileKind(mode: s.st_mode)
    }

    /// Whether `path` is a directory, or a symbolic link to one.
    static func isDirectory(_ path: String) -> Bool {
        var s = stat()
        return stat(path, &s) == 0 && FileKind(mode: s.st_mode) == .directory
    }

    /// `mkdir path` (0755); an existing directory (or a link to one) is fine.
    static func makeDirectory(_ path: String) throws(FileError) {
        if mkdir(path, 0o755) == 0 { return }
        let code = errno
        if code == EEXIST, isDirectory(path) { return }
        throw FileError("create the folder", path, errno: code)
    }

    /// `mkdir -p path`; folders on the way may be symbolic links to folders.
    static func makeDirectories(_ path: String) throws(FileError) {
        if isDirectory(path) { return }
        var parent = path
        while parent.count > 1, parent.hasSuffix("/") { parent.removeLast() }
        if let slash = parent.lastIndex(of: "/"), slash != parent.startIndex {
            try makeDirectories(String(parent[..<slash]))
        }
        try makeDirectory(path)
    }

    /// Copies the regular file `source` to the new file `target` (which must not exist) with
    /// `mode`, in the kernel where it can (see `shoal_copy_file`). Refuses a source that is not a
    /// regular file, so a FIFO or a device never blocks or streams for ever.
    static func copyFile(from source: String, to target: String, mode: mode_t) throws(FileError) {
        let input = open(source, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard input >= 0 else { throw FileError("open", source) }
        defer { close(input) }
        var s = stat()
        guard fstat(input, &s) == 0 else { throw FileError("inspect", source) }
        guard FileKind(mode: s.st_mode) == .regular else {
            throw FileError("copy", source, reason: "it is \(FileKind(mode: s.st_mode)), not a regular file")
        }
        let output = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard output >= 0 else { throw FileError("create", target) }
        let rc = shoal_copy_file(input, output)
        // Set the mode exactly (the umask may have narrowed it).
        let modeRC = fchmod(output, mode)
        let modeErrno = errno
        close(output)
        if rc != 0 {
            unlink(target)
            throw FileError("copy to", target, errno: rc)
        }
        if modeRC != 0 { throw FileError("set the mode of", target, errno: modeErrno) }
    }

    /// Writes `bytes` to the new file `path` (which must not exist) with `mode`.
    static func writeFile(_ bytes: [UInt8], to path: String, mode: mode_t) throws(FileError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError("create", path) }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw FileError("write", path) }
            done += n
        }
        guard fchmod(fd, mode) == 0 else { throw FileError("set the mode of", path) }
    }

    /// Empties the folder `path` (everything in it goes, without following symbolic links), and
    /// gives it mode 0755 again; keeps the `in` and `out` folders an exec attempt makes, emptied.
    /// Returns false when the folder is not a folder any more or could not be emptied.
    static func empty(_ path: String) -> Bool {
        var s = stat()
        guard lstat(path, &s) == 0 else { return errno == ENOENT }
        guard FileKind(mode: s.st_mode) == .directory else { return false }
        if s.st_mode & 0o7777 != 0o755 { chmod(path, 0o755) }
        let bytes = Array(path.utf8)
        for name in entries(bytes) {
            if name == Array("in".utf8) || name == Array("out".utf8) {
                let inner = bytes + [0x2F] + name
                var t = stat()
                let cInner = inner.map { CChar(bitPattern: $0) } + [0]
                if lstat(cInner, &t) == 0, FileKind(mode: t.st_mode) == .directory {
                    if t.st_mode & 0o7777 != 0o755 { chmod(cInner, 0o755) }
                    for child in entries(inner) { removeTree(bytes: inner + [0x2F] + child) }
                    continue
                }
            }
            removeTree(bytes: bytes + [0x2F] + name)
        }
        // Anything left (a file this process may not remove) means the folder is not empty.
        return entries(bytes).allSatisfy { $0 == Array("in".utf8) || $0 == Array("out".utf8) }
    }

    /// The names in folder `path`, without `.` and `..` (empty when it cannot be read).
    static func names(in path: String) -> [[UInt8]] { entries(Array(path.utf8)) }

    /// The names in folder `path` (bytes, not NUL-terminated), without `.` and `..`.
    private static func entries(_ path: [UInt8]) -> [[UInt8]] {
        let cPath = path.map { CChar(bitPattern: $0) } + [0]
        guard let dir = opendir(cPath) else { return [] }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [0x2E] && name != [0x2E, 0x2E] { names.append(name) }
        }
        return names
    }

    /// Removes `path` and everything under it, without following symbolic links. Makes read-only
    /// folders writable on the way (a command may have left one). Names need not be UTF-8.
    static func removeTree(_ path: String) {
        removeTree(bytes: Array(path.utf8))
    }

    private static func removeTree(bytes path: [UInt8]) {
        let cPath = path.map { CChar(bitPattern: $0) } + [0]
        if unlink(cPath) == 0 || errno == ENOENT { return }
        var s = stat()
        guard lstat(cPath, &s) == 0, FileKind(mode: s.st_mode) == .directory else { return }
        if rmdir(cPath) == 0 { return }
        chmod(cPath, 0o755)
        for name in entries(path) { removeTree(bytes: path + [0x2F] + name) }
        rmdir(cPath)
    }
}
