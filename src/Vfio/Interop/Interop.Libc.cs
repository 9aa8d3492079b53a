using System.Runtime.InteropServices;

internal static partial class Interop
{
    /// <summary>
    /// glibc entry points. Names and constants are the C ones, verbatim. Every call sets errno, which
    /// callers turn into exceptions through <see cref="global::Vfio.Errno"/>.
    /// </summary>
    internal static partial class Libc
    {
        internal const string LibraryName = "libc";

        // fcntl.h
        internal const int O_RDONLY = 0x0;
        internal const int O_WRONLY = 0x1;
        internal const int O_RDWR = 0x2;
        internal const int O_CLOEXEC = 0x80000;
        internal const int O_NONBLOCK = 0x800;

        [LibraryImport(LibraryName, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial int open(string pathname, int flags);

        [LibraryImport(LibraryName, EntryPoint = "close", SetLastError = true)]
        internal static partial int close(int fd);

        [LibraryImport(LibraryName, EntryPoint = "read", SetLastError = true)]
        internal static unsafe partial nint read(int fd, void* buf, nuint count);

        [LibraryImport(LibraryName, EntryPoint = "write", SetLastError = true)]
        internal static unsafe partial nint write(int fd, void* buf, nuint count);

        [LibraryImport(LibraryName, EntryPoint = "readv", SetLastError = true)]
        internal static unsafe partial nint readv(int fd, iovec* iov, int iovcnt);

        [LibraryImport(LibraryName, EntryPoint = "writev", SetLastError = true)]
        internal static unsafe partial nint writev(int fd, iovec* iov, int iovcnt);

        [LibraryImport(LibraryName, EntryPoint = "pread64", SetLastError = true)]
        internal static unsafe partial nint pread(int fd, void* buf, nuint count, long offset);

        [LibraryImport(LibraryName, EntryPoint = "pwrite64", SetLastError = true)]
        internal static unsafe partial nint pwrite(int fd, void* buf, nuint count, long offset);

        [LibraryImport(LibraryName, EntryPoint = "ftruncate64", SetLastError = true)]
        internal static partial int ftruncate(int fd, long length);

        // ioctl(2): the request is an unsigned long on x86_64; the third argument is a pointer or an integer.
        [LibraryImport(LibraryName, EntryPoint = "ioctl", SetLastError = true)]
        internal static unsafe partial int ioctl(int fd, nuint request, void* arg);

        [LibraryImport(LibraryName, EntryPoint = "ioctl", SetLastError = true)]
        internal static partial int ioctl(int fd, nuint request, nint arg);

        [LibraryImport(LibraryName, EntryPoint = "getpid")]
        internal static partial int getpid();

        [LibraryImport(LibraryName, EntryPoint = "sysconf", SetLastError = true)]
        internal static partial long sysconf(int name);

        internal const int _SC_PAGESIZE = 30;
    }
}
