namespace Vfio.Igb.Tests;

/// <summary>Statistics accumulation: clear-on-read registers add up, free-running ones are differenced across wraps.</summary>
public sealed class CounterAccumulatorTests
{
    [Fact]
    public void Clear_on_read_readings_add_up_past_32_bits()
    {
        var c = new CounterAccumulator(CounterKind.ClearOnRead);
        c.Add(uint.MaxValue);
        c.Add(uint.MaxValue);
        c.Add(2);
        Assert.Equal(2L * uint.MaxValue + 2, c.Total);
    }

    [Fact]
    public void Wrapping_counter_counts_the_difference_modulo_two_to_the_32()
    {
        var c = new CounterAccumulator(CounterKind.Wrapping);
        Assert.Equal(0, c.Add(0xFFFF_FFF0));   // baseline only
        Assert.Equal(0x20, c.Add(0x10));       // wrapped
        Assert.Equal(5, c.Add(0x15));
        Assert.Equal(0x25, c.Total);
    }

    [Fact]
    public void Octet_pairs_combine_low_and_high()
    {
        var c = new CounterAccumulator(CounterKind.ClearOnRead);
        c.Add64(0x10, 0x1);
        c.Add64(0xFFFF_FFFF, 0);
        Assert.Equal(0x1_0000_0010L + 0xFFFF_FFFFL, c.Total);
    }

    [Fact]
    public void Register_set_reads_each_register_once_low_before_high()
    {
        var order = new List<ulong>();
        var regs = new IgbStatsRegisters();
        regs.Update(o => { order.Add(o); return o == IgbStatsRegisters.Gprc ? 3u : o == IgbStatsRegisters.Gorcl ? 100u : o == IgbStatsRegisters.Gorch ? 1u : 0u; });
        regs.Update(o => o == IgbStatsRegisters.Gprc ? 4u : 0u);
        var s = regs.Snapshot();
        Assert.Equal(7, s.GoodPacketsReceived);
        Assert.Equal((1L << 32) + 100, s.GoodOctetsReceived);
        Assert.Equal(order.Count, order.Distinct().Count());
        Assert.True(order.IndexOf(IgbStatsRegisters.Gorcl) < order.IndexOf(IgbStatsRegisters.Gorch));
        Assert.True(order.IndexOf(IgbStatsRegisters.Totl) < order.IndexOf(IgbStatsRegisters.Toth));
    }
}
