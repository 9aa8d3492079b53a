using System.Runtime.InteropServices;

internal static partial class Interop
{
#pragma warning disable CS8981 // the C names, kept verbatim as Interop names are
    internal static partial class Libc
    {
        // sys/socket.h (x86_64)
        internal const int AF_UNIX = 1;
        internal const int AF_INET = 2;
        internal const int SOCK_STREAM = 1;
        internal const int SOCK_DGRAM = 2;
        internal const int SOCK_CLOEXEC = 0x80000;
        internal const int SOL_SOCKET = 1;
        internal const int SCM_RIGHTS = 1;
        internal const int MSG_CTRUNC = 0x8;
        internal const int MSG_DONTWAIT = 0x40;
        internal const int MSG_NOSIGNAL = 0x4000;
        internal const int MSG_CMSG_CLOEXEC = 0x40000000;

        /// <summary><c>struct iovec</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal unsafe struct iovec
        {
            public void* iov_base;
            public nuint iov_len;
        }

        /// <summary><c>struct msghdr</c> (56 bytes on x86_64).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal unsafe struct msghdr
        {
            public void* msg_name;
            public uint msg_namelen;
            public iovec* msg_iov;
            public nuint msg_iovlen;
            public void* msg_control;
            public nuint msg_controllen;
            public int msg_flags;
        }

        /// <summary><c>struct cmsghdr</c>: the header before each control message's data (16 bytes on x86_64).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct cmsghdr
        {
            public nuint cmsg_len;
            public int cmsg_level;
            public int cmsg_type;
        }

        /// <summary><c>CMSG_ALIGN</c>: control data is aligned to <c>size_t</c>.</summary>
        internal static nuint CMSG_ALIGN(nuint len) => (len + (nuint)sizeof(ulong) - 1) & ~((nuint)sizeof(ulong) - 1);

        /// <summary><c>CMSG_LEN</c>: header plus <paramref name="len"/> data bytes.</summary>
        internal static unsafe nuint CMSG_LEN(nuint len) => CMSG_ALIGN((nuint)sizeof(cmsghdr)) + len;

        /// <summary><c>CMSG_SPACE</c>: buffer bytes one control message with <paramref name="len"/> data bytes takes.</summary>
        internal static unsafe nuint CMSG_SPACE(nuint len) => CMSG_ALIGN((nuint)sizeof(cmsghdr)) + CMSG_ALIGN(len);

        [LibraryImport(LibraryName, EntryPoint = "socket", SetLastError = true)]
        internal static partial int socket(int domain, int type, int protocol);

        [LibraryImport(LibraryName, EntryPoint = "socketpair", SetLastError = true)]
        internal static unsafe partial int socketpair(int domain, int type, int protocol, int* sv);

        [LibraryImport(LibraryName, EntryPoint = "sendmsg", SetLastError = true)]
        internal static unsafe partial nint sendmsg(int sockfd, msghdr* msg, int flags);

        [LibraryImport(LibraryName, EntryPoint = "recvmsg", SetLastError = true)]
        internal static unsafe partial nint recvmsg(int sockfd, msghdr* msg, int flags);

        // poll.h
        internal const short POLLIN = 0x1;
        internal const short POLLOUT = 0x4;

        /// <summary><c>struct pollfd</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct pollfd
        {
            public int fd;
            public short events;
            public short revents;
        }

        [LibraryImport(LibraryName, EntryPoint = "poll", SetLastError = true)]
        internal static unsafe partial int poll(pollfd* fds, nuint nfds, int timeout);

        // unistd.h
        internal const int SEEK_END = 2;

        [LibraryImport(LibraryName, EntryPoint = "lseek64", SetLastError = true)]
        internal static partial long lseek(int fd, long offset, int whence);

        [LibraryImport(LibraryName, EntryPoint = "dup", SetLastError = true)]
        internal static partial int dup(int fd);
    }
#pragma warning restore CS8981
}
