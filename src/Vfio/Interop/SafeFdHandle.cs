using System.Runtime.InteropServices;

namespace Vfio;

/// <summary>
/// Owns one Linux file descriptor (VFIO container, group, device, eventfd, epoll, memfd …) and closes
/// it exactly once. Descriptor 0 is valid; -1 is the invalid value.
/// </summary>
public sealed class SafeFdHandle : SafeHandle
{
    /// <summary>An invalid handle, for marshalling.</summary>
    public SafeFdHandle() : base(-1, ownsHandle: true) { }

    /// <summary>Takes ownership of <paramref name="fd"/>.</summary>
    public SafeFdHandle(int fd, bool ownsHandle = true) : base(-1, ownsHandle) => SetHandle(fd);

    /// <inheritdoc />
    public override bool IsInvalid => handle < 0;

    /// <summary>The raw descriptor, for passing to a syscall while a reference is held.</summary>
    internal int Fd => (int)handle;

    /// <inheritdoc />
    protected override bool ReleaseHandle() => Interop.Libc.close((int)handle) == 0;
}
