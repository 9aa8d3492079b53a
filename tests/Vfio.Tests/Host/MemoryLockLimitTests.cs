using System.Runtime.InteropServices;
using Vfio.Host;

namespace Vfio.Tests.Host;

public sealed class MemoryLockLimitTests
{
    [Fact]
    public void Struct_rlimit_is_two_64_bit_words()
    {
        // struct rlimit { rlim_t rlim_cur; rlim_t rlim_max; } with 64-bit rlim_t on x86_64 and aarch64.
        Assert.Equal(16, Marshal.SizeOf<Interop.Libc.rlimit>());
        Assert.Equal(8, (int)Marshal.OffsetOf<Interop.Libc.rlimit>(nameof(Interop.Libc.rlimit.rlim_max)));
    }

    [Fact]
    public void Query_reads_this_process_limit()
    {
        var limit = PciHost.GetMemoryLockLimit();
        Assert.True(limit.Hard == ulong.MaxValue || limit.Soft <= limit.Hard, limit.ToString());
    }

    [Fact]
    public void Limits_print_in_binary_units()
    {
        Assert.Equal("64 KiB (hard limit 8 MiB)", new MemoryLockLimit(64 << 10, 8 << 20).ToString());
        Assert.Equal("1 GiB (hard limit unlimited)", new MemoryLockLimit(1UL << 30, ulong.MaxValue).ToString());
        Assert.Equal("unlimited", new MemoryLockLimit(ulong.MaxValue, ulong.MaxValue).ToString());
        Assert.Equal("1000 bytes (hard limit 1000 bytes)", new MemoryLockLimit(1000, 1000).ToString());
    }

    [Fact]
    public void Allows_counts_what_is_already_locked()
    {
        var limit = new MemoryLockLimit(8 << 20, 8 << 20);
        Assert.True(limit.Allows(8 << 20));
        Assert.False(limit.Allows((8 << 20) + 1));
        Assert.True(limit.Allows(4 << 20, alreadyLocked: 4 << 20));
        Assert.False(limit.Allows(4 << 20, alreadyLocked: 6 << 20));
        Assert.False(limit.Allows(0, alreadyLocked: 9 << 20));
        Assert.True(new MemoryLockLimit(ulong.MaxValue, ulong.MaxValue).Allows(1UL << 40));
    }
}
