using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // linux/mempolicy.h
        internal const int MPOL_DEFAULT = 0;
        internal const int MPOL_PREFERRED = 1;
        internal const int MPOL_BIND = 2;

        // asm-generic/mman-common.h (Linux 5.14)
        internal const int MADV_POPULATE_WRITE = 23;

        // mbind(2) has no glibc wrapper (libnuma has one): it is called through syscall(2). asm/unistd_64.h (x86_64,
        // checked against the header by the header probe); arm64 takes its number from asm-generic/unistd.h.
        internal const long __NR_mbind = 237;

        /// <summary>The mbind syscall number of the architecture the process runs on, or -1 where this library does not know it.</summary>
        private static long MbindNumber => RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => __NR_mbind,
            Architecture.Arm64 => 235,      // asm-generic/unistd.h: #define __NR_mbind 235
            _ => -1,
        };

        // long syscall(long number, ...): declared with mbind's six arguments, all passed in integer registers, which
        // is how the variadic call passes them on x86_64 and arm64 Linux too.
        [LibraryImport(LibraryName, EntryPoint = "syscall", SetLastError = true)]
        private static partial long syscall_mbind(long number, nint addr, nuint len, int mode, ref ulong nodemask, nuint maxnode, uint flags);

        /// <summary>mbind(addr, len, mode, nodemask, maxnode, flags): 0, or -1 with errno set.</summary>
        internal static long mbind(nint addr, nuint len, int mode, ref ulong nodemask, nuint maxnode, uint flags) =>
            MbindNumber < 0 ? -1 : syscall_mbind(MbindNumber, addr, len, mode, ref nodemask, maxnode, flags);
    }
}
