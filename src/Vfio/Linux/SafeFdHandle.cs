using System.Runtime.InteropServices;

namespace Vfio.Linux;

/// <summary>
/// Owns one Linux file descriptor (VFIO container, group, device, eventfd, epoll, memfd, one received from a peer
/// over a UNIX socket …) and closes it exactly once. Descriptor 0 is valid; -1 is the invalid value.
/// </summary>
public sealed class SafeFdHandle : SafeHandle
{
    /// <summary>An invalid handle, for marshalling and for a slot whose descriptor was taken elsewhere.</summary>
    public SafeFdHandle() : base(-1, ownsHandle: true) { }

    /// <summary>Takes ownership of <paramref name="fd"/> (or only wraps it when <paramref name="ownsHandle"/> is false).</summary>
    public SafeFdHandle(int fd, bool ownsHandle = true) : base(-1, ownsHandle) => SetHandle(fd);

    /// <inheritdoc />
    public override bool IsInvalid => handle < 0;

    /// <summary>The raw descriptor, for passing to a syscall while a reference is held.</summary>
    internal int Fd => (int)handle;

    /// <summary>
    /// A second descriptor for the same open file (<c>dup(2)</c>), owned by the caller: to hand to a peer, or to keep
    /// while this one is closed. Like <c>dup</c> it does not set close-on-exec.
    /// </summary>
    /// <param name="operation">What the duplicate is for, named in the exception ("dup of a BAR memfd").</param>
    /// <exception cref="ObjectDisposedException">This handle is closed.</exception>
    /// <exception cref="VfioException">The kernel refused (EMFILE: the process is out of descriptors).</exception>
    public SafeFdHandle Duplicate(string operation = "dup")
    {
        ObjectDisposedException.ThrowIf(IsClosed, this);
        bool added = false;
        DangerousAddRef(ref added);
        try
        {
            return new SafeFdHandle(Errno.Check(Interop.Libc.dup(Fd), operation));
        }
        finally
        {
            if (added) { DangerousRelease(); }
        }
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle() => Interop.Libc.close((int)handle) == 0;
}
