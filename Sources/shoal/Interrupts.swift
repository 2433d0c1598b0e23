import CProcess
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// SIGINT, SIGTERM and SIGHUP for a command that must clean up before it dies: while an
/// `Interrupts` is alive, each of them runs `cleanUp(signal)` once, on a background queue, and
/// then exits with 128 + the signal (130, 143, 129), as a shell reports a death by that signal.
///
/// The signals are set to "ignore", then handed to dispatch sources (libdispatch installs its own
/// handler as a source registers, which happens asynchronously, so a signal in the first moments
/// is ignored rather than handled); no clean-up code runs inside a signal handler. Commands
/// started by `CommandProcesses` start with every signal at its default action.
final class Interrupts: @unchecked Sendable {
    static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]
    // Touched only in init and cancel(), on the thread that owns this object.
    private var sources: [any DispatchSourceSignal] = []
    /// One clean-up, whichever signal comes first.
    private static let fired = Atomic<Bool>(false)

    /// The signals this object handles: those not ignored when it was made. A signal the
    /// command was started with ignored (`nohup` ignores SIGHUP; `cmd &` in a script ignores
    /// SIGINT) stays ignored, as the user asked.
    private var handled: [Int32] = []

    init(_ cleanUp: @escaping @Sendable (Int32) -> Void) {
        for signo in Self.signals where shoal_signal_is_ignored(signo) == 0 {
            handled.append(signo)
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global(qos: .userInitiated))
            source.setEventHandler {
                guard !Interrupts.fired.exchange(true, ordering: .acquiringAndReleasing) else { return }
                cleanUp(signo)
                exit(128 + signo)
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Whether a signal arrived: its clean-up runs or ran, and the process is about to exit.
    static var triggered: Bool { fired.load(ordering: .acquiring) }

    /// When a signal arrived, waits for its clean-up to exit the process, so that the command's
    /// own ending (tasks failing as their commands are killed) neither prints nor picks the exit
    /// code. Returns at once otherwise.
    static func holdIfTriggered() {
        guard triggered else { return }
        while true { pause() }
    }

    /// Called when the command is about to end on its own: from now on a signal does nothing
    /// (so two exits never race). If a signal came first, waits for its clean-up to exit the
    /// process instead.
    static func settle() {
        if fired.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged { return }
        while true { pause() }
    }

    /// Gives the signals back their default actions.
    func cancel() {
        for source in sources { source.cancel() }
        sources = []
        for signo in handled { signal(signo, SIG_DFL) }
        handled = []
    }
}
