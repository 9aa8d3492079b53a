namespace Vfio.Igb;

/// <summary>
/// The device's own statistics (82576 datasheet §8.19), accumulated by the driver into 64-bit counters since the
/// device was opened. The registers clear when read (§8.19: "all statistics registers reset when read"), 32 bits
/// wide except the octet counters, which are 64-bit low/high pairs.
/// </summary>
/// <param name="CrcErrors">CRCERRS: frames received with a bad CRC.</param>
/// <param name="MissedPackets">MPC: frames dropped because the receive FIFO was full.</param>
/// <param name="ReceiveNoBuffers">RNBC: times a frame arrived with no receive descriptor available.</param>
/// <param name="GoodPacketsReceived">GPRC.</param>
/// <param name="BroadcastPacketsReceived">BPRC.</param>
/// <param name="MulticastPacketsReceived">MPRC.</param>
/// <param name="GoodOctetsReceived">GORCL/GORCH (with the 4 CRC bytes).</param>
/// <param name="TotalPacketsReceived">TPR.</param>
/// <param name="TotalOctetsReceived">TORL/TORH.</param>
/// <param name="GoodPacketsTransmitted">GPTC.</param>
/// <param name="BroadcastPacketsTransmitted">BPTC.</param>
/// <param name="MulticastPacketsTransmitted">MPTC.</param>
/// <param name="GoodOctetsTransmitted">GOTCL/GOTCH (with the 4 CRC bytes).</param>
/// <param name="TotalPacketsTransmitted">TPT.</param>
/// <param name="TotalOctetsTransmitted">TOTL/TOTH.</param>
public readonly record struct IgbHardwareStats(
    long CrcErrors, long MissedPackets, long ReceiveNoBuffers,
    long GoodPacketsReceived, long BroadcastPacketsReceived, long MulticastPacketsReceived, long GoodOctetsReceived,
    long TotalPacketsReceived, long TotalOctetsReceived,
    long GoodPacketsTransmitted, long BroadcastPacketsTransmitted, long MulticastPacketsTransmitted, long GoodOctetsTransmitted,
    long TotalPacketsTransmitted, long TotalOctetsTransmitted);

/// <summary>Packet counters of the driver, summed over its queues.</summary>
/// <param name="RxPackets">Packets handed to the application.</param>
/// <param name="RxBytes">Bytes of those packets (CRC stripped).</param>
/// <param name="RxErrors">Frames the device marked RXE (bad CRC, symbol error), dropped by the driver.</param>
/// <param name="TxPackets">Packets handed to the device.</param>
/// <param name="TxBytes">Bytes handed to the device.</param>
/// <param name="Doorbells">Tail register writes.</param>
public readonly record struct IgbDriverStats(long RxPackets, long RxBytes, long RxErrors, long TxPackets, long TxBytes, long Doorbells);

/// <summary>How a statistics register counts.</summary>
internal enum CounterKind
{
    /// <summary>Cleared by every read: each read is the increase since the last one.</summary>
    ClearOnRead,
    /// <summary>Free running and wrapping at 2^32: the increase is the difference modulo 2^32.</summary>
    Wrapping,
}

/// <summary>
/// Turns readings of 32-bit hardware counters into 64-bit totals: a pure function of the readings, so wrap and
/// clear-on-read handling are tested without a device.
/// </summary>
internal sealed class CounterAccumulator(CounterKind kind)
{
    private uint _last;
    private bool _primed;

    public CounterKind Kind => kind;

    /// <summary>The running total.</summary>
    public long Total { get; private set; }

    /// <summary>Adds one reading; returns the increase it stands for.</summary>
    public long Add(uint reading)
    {
        long increase;
        if (kind == CounterKind.ClearOnRead)
        {
            increase = reading;
        }
        else
        {
            // The first reading only sets the baseline: what the counter held before the driver came is not ours.
            increase = _primed ? unchecked(reading - _last) : 0;
            _last = reading;
            _primed = true;
        }
        Total += increase;
        return increase;
    }

    /// <summary>Adds a reading of a 64-bit clear-on-read pair (low read first, then high, which clears both).</summary>
    public long Add64(uint low, uint high)
    {
        long increase = (long)(((ulong)high << 32) | low);
        Total += increase;
        return increase;
    }
}

/// <summary>The §8.19 registers the driver reads, and the running totals.</summary>
internal sealed class IgbStatsRegisters
{
    // Offsets from §8.19.
    internal const ulong Crcerrs = 0x4000, Mpc = 0x4010, Gprc = 0x4074, Bprc = 0x4078, Mprc = 0x407C, Gptc = 0x4080,
        Gorcl = 0x4088, Gorch = 0x408C, Gotcl = 0x4090, Gotch = 0x4094, Rnbc = 0x40A0, Torl = 0x40C0, Torh = 0x40C4,
        Totl = 0x40C8, Toth = 0x40CC, Tpr = 0x40D0, Tpt = 0x40D4, Mptc = 0x40F0, Bptc = 0x40F4;

    private static readonly ulong[] s_single = [Crcerrs, Mpc, Rnbc, Gprc, Bprc, Mprc, Tpr, Gptc, Bptc, Mptc, Tpt];
    private static readonly (ulong Low, ulong High)[] s_pairs = [(Gorcl, Gorch), (Torl, Torh), (Gotcl, Gotch), (Totl, Toth)];

    private readonly CounterAccumulator[] _single = [.. s_single.Select(_ => new CounterAccumulator(CounterKind.ClearOnRead))];
    private readonly CounterAccumulator[] _pairs = [.. s_pairs.Select(_ => new CounterAccumulator(CounterKind.ClearOnRead))];

    /// <summary>Reads every register once (clearing them) and adds the readings to the totals.</summary>
    public void Update(Func<ulong, uint> read32)
    {
        for (int i = 0; i < s_single.Length; i++) { _single[i].Add(read32(s_single[i])); }
        for (int i = 0; i < s_pairs.Length; i++)
        {
            uint low = read32(s_pairs[i].Low);
            _pairs[i].Add64(low, read32(s_pairs[i].High));
        }
    }

    public IgbHardwareStats Snapshot() => new(
        CrcErrors: _single[0].Total, MissedPackets: _single[1].Total, ReceiveNoBuffers: _single[2].Total,
        GoodPacketsReceived: _single[3].Total, BroadcastPacketsReceived: _single[4].Total, MulticastPacketsReceived: _single[5].Total,
        GoodOctetsReceived: _pairs[0].Total, TotalPacketsReceived: _single[6].Total, TotalOctetsReceived: _pairs[1].Total,
        GoodPacketsTransmitted: _single[7].Total, BroadcastPacketsTransmitted: _single[8].Total, MulticastPacketsTransmitted: _single[9].Total,
        GoodOctetsTransmitted: _pairs[2].Total, TotalPacketsTransmitted: _single[10].Total, TotalOctetsTransmitted: _pairs[3].Total);
}
