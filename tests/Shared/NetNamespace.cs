using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Vfio.Tests.Linux;

/// <summary>
/// A fresh network namespace owned by one dedicated thread (<c>unshare(CLONE_NEWNET)</c> moves only the calling
/// thread), so that tests create TAP interfaces without touching the host's interfaces. Work runs on that thread
/// through <see cref="Run{T}"/>; the namespace goes away with the thread. Needs CAP_SYS_ADMIN (the tests run as root,
/// as the lab and CI do); without it the constructor throws and the test fails rather than skips.
/// </summary>
internal sealed partial class NetNamespace : IDisposable
{
    private const int CLONE_NEWNET = 0x40000000;
    private readonly BlockingCollection<Action> _work = [];
    private readonly Thread _thread;
    private readonly TaskCompletionSource<int> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public NetNamespace()
    {
        _thread = new Thread(Loop) { IsBackground = true, Name = "netns" };
        _thread.Start();
        ThreadId = _ready.Task.GetAwaiter().GetResult();
    }

    /// <summary>The namespace thread's kernel thread id (its /proc/PID/task/TID/ns/net names the namespace).</summary>
    public int ThreadId { get; }

    /// <summary>Runs <paramref name="work"/> on the namespace's thread and returns what it returns (or rethrows).</summary>
    public T Run<T>(Func<T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        _work.Add(() =>
        {
            try { done.SetResult(work()); }
            catch (Exception e) { done.SetException(e); }
        });
        return done.Task.GetAwaiter().GetResult();
    }

    /// <summary>Runs <paramref name="work"/> on the namespace's thread.</summary>
    public void Run(Action work) => Run(() => { work(); return 0; });

    /// <summary>
    /// The kernel's receive and transmit packet counts of <paramref name="name"/> in this namespace, from
    /// /proc/thread-self/net/dev read on the namespace's thread (sysfs shows the namespace it was mounted in).
    /// </summary>
    public (long RxPackets, long TxPackets) Counters(string name) => Run(() => ReadCounters(name));

    /// <summary><see cref="Counters"/> for a caller already on the namespace's thread (inside <see cref="Run{T}"/>).</summary>
    public static (long RxPackets, long TxPackets) ReadCounters(string name)
    {
        foreach (string line in File.ReadAllLines("/proc/thread-self/net/dev"))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0 || line[..colon].Trim() != name) { continue; }
            string[] f = line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            // Receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes packets ...
            return (long.Parse(f[1], CultureInfo.InvariantCulture), long.Parse(f[9], CultureInfo.InvariantCulture));
        }
        throw new InvalidOperationException($"no interface {name} in this namespace");
    }

    /// <summary>Writes a sysctl of this namespace (/proc/sys/net is per namespace, resolved by the opening thread).</summary>
    public void Sysctl(string path, string value) => Run(() => File.WriteAllText(Path.Combine("/proc/sys", path), value));

    /// <summary>Runs a program (ip, tcpdump …) inside this namespace through nsenter and returns its exit code and output.</summary>
    public (int ExitCode, string Output) Exec(string program, params string[] args)
    {
        var psi = new ProcessStartInfo("nsenter") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add($"--net=/proc/{Environment.ProcessId}/task/{ThreadId}/ns/net");
        psi.ArgumentList.Add(program);
        foreach (string a in args) { psi.ArgumentList.Add(a); }
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output + err.Result);
    }

    public void Dispose()
    {
        _work.CompleteAdding();
        _thread.Join();
        _work.Dispose();
    }

    private void Loop()
    {
        if (unshare(CLONE_NEWNET) != 0)
        {
            _ready.SetException(new InvalidOperationException(
                $"unshare(CLONE_NEWNET) failed (errno {Marshal.GetLastPInvokeError()}): the TAP tests need root (CAP_SYS_ADMIN)"));
            return;
        }
        _ready.SetResult(gettid());
        foreach (var work in _work.GetConsumingEnumerable()) { work(); }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int unshare(int flags);

    [LibraryImport("libc")]
    private static partial int gettid();
}
