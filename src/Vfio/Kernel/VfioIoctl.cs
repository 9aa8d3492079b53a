using Vfio.Linux;

namespace Vfio.Kernel;

/// <summary>Calls ioctls on SafeFdHandles, keeping the handle alive for the call and mapping errno once.</summary>
internal static class VfioIoctl
{
    /// <summary>ioctl with a pointer argument; throws on failure.</summary>
    public static unsafe int Call(SafeFdHandle handle, nuint request, void* arg, string operation, PciAddress? device = null, string? hint = null)
    {
        int r = Raw(handle, request, arg);
        return r < 0 ? throw Errno.ToException(Errno.Last, operation, device, hint) : r;
    }

    /// <summary>ioctl with an integer argument; throws on failure.</summary>
    public static int CallValue(SafeFdHandle handle, nuint request, nint arg, string operation, PciAddress? device = null)
    {
        int r = RawValue(handle, request, arg);
        return r < 0 ? throw Errno.ToException(Errno.Last, operation, device) : r;
    }

    /// <summary>ioctl with an integer argument, result returned as is (negative: see <see cref="Errno.Last"/>).</summary>
    public static int RawValue(SafeFdHandle handle, nuint request, nint arg)
    {
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            return Interop.Libc.ioctl(handle.Fd, request, arg);
        }
        finally
        {
            if (added) { handle.DangerousRelease(); }
        }
    }

    /// <summary>ioctl with a pointer argument, result returned as is.</summary>
    public static unsafe int Raw(SafeFdHandle handle, nuint request, void* arg)
    {
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            // SAFETY: the caller guarantees arg points at a buffer of the size the request expects.
            return Interop.Libc.ioctl(handle.Fd, request, arg);
        }
        finally
        {
            if (added) { handle.DangerousRelease(); }
        }
    }

    /// <summary>ioctl without argument, ignoring failure (used on teardown paths).</summary>
    public static unsafe void TryCall(SafeFdHandle handle, nuint request) => Raw(handle, request, null);

    /// <summary>ioctl whose argument is a NUL-terminated string; returns the raw result.</summary>
    public static unsafe int CallWithString(SafeFdHandle handle, nuint request, string value)
    {
        int max = System.Text.Encoding.UTF8.GetMaxByteCount(value.Length) + 1;
        Span<byte> bytes = max <= 256 ? stackalloc byte[max] : new byte[max];
        int n = System.Text.Encoding.UTF8.GetBytes(value, bytes);
        bytes[n] = 0;
        fixed (byte* p = bytes)
        {
            // SAFETY: p is a NUL-terminated string pinned for the call.
            return Raw(handle, request, p);
        }
    }
}
