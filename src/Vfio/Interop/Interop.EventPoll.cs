using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/eventfd.h
        internal const int EFD_SEMAPHORE = 0x1;
        internal const int EFD_CLOEXEC = 0x80000;
        internal const int EFD_NONBLOCK = 0x800;

        [LibraryImport(LibraryName, EntryPoint = "eventfd", SetLastError = true)]
        internal static partial int eventfd(uint initval, int flags);

        // sys/epoll.h
        internal const int EPOLL_CLOEXEC = 0x80000;
        internal const int EPOLL_CTL_ADD = 1;
        internal const int EPOLL_CTL_DEL = 2;
        internal const int EPOLL_CTL_MOD = 3;
        internal const uint EPOLLIN = 0x001;
        internal const uint EPOLLERR = 0x008;
        internal const uint EPOLLHUP = 0x010;

        /// <summary><c>struct epoll_event</c>: packed on x86_64 (12 bytes).</summary>
        [StructLayout(LayoutKind.Sequential, Pack = 4)]
        internal struct epoll_event
        {
            public uint events;
            public ulong data;
        }

        [LibraryImport(LibraryName, EntryPoint = "epoll_create1", SetLastError = true)]
        internal static partial int epoll_create1(int flags);

        [LibraryImport(LibraryName, EntryPoint = "epoll_ctl", SetLastError = true)]
        internal static unsafe partial int epoll_ctl(int epfd, int op, int fd, epoll_event* ev);

        [LibraryImport(LibraryName, EntryPoint = "epoll_wait", SetLastError = true)]
        internal static unsafe partial int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout);
    }
}
