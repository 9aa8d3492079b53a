using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/resource.h (x86_64): rlim_t is an unsigned 64-bit integer and RLIM_INFINITY is all ones.
        internal const int RLIMIT_MEMLOCK = 8;
        internal const ulong RLIM_INFINITY = ulong.MaxValue;

        /// <summary><c>struct rlimit</c>: the soft limit (enforced) and the hard limit (ceiling for the soft one).</summary>
        [StructLayout(LayoutKind.Sequential)]
#pragma warning disable CS8981 // the C name, kept verbatim as Interop names are
        internal struct rlimit
#pragma warning restore CS8981
        {
            public ulong rlim_cur;
            public ulong rlim_max;
        }

        // glibc's getrlimit on x86_64 is the 64-bit call already; getrlimit64 is an alias of it.
        [LibraryImport(LibraryName, EntryPoint = "getrlimit", SetLastError = true)]
        internal static partial int getrlimit(int resource, out rlimit rlim);
    }
}
