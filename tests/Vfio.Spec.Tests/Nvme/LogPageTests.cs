using System.Buffers.Binary;
using Vfio.Spec.Nvme;

namespace Vfio.Spec.Tests.Nvme;

/// <summary>
/// Identify Controller's remaining fields, the log page structures and the AER/Get Log Page encodings, from bytes laid
/// out at the offsets of NVMe Base 2.0 Figures 275-276, 205-212 and 145.
/// </summary>
public sealed class LogPageTests
{
    [Fact]
    public void IdentifyControllerFieldsSitAtTheirOffsets()
    {
        var b = IdentifyTests.QemuController();
        b[72] = 6;
        b[73] = 0x00; b[74] = 0x54; b[75] = 0x52;
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(92), 0x300);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(256), 0x000E);
        b[259] = 3; b[260] = 0x03; b[261] = 0x06; b[262] = 63; b[263] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(266), 343);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(268), 373);
        BinaryPrimitives.WriteUInt128LittleEndian(b.AsSpan(280), (UInt128)1 << 100);
        BinaryPrimitives.WriteUInt128LittleEndian(b.AsSpan(296), 12345);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(1804), 0xABCD);
        for (int i = 0; i < 16; i++) { b[112 + i] = (byte)(0x10 + i); }
        // Power state 1: 8.00 W, non-operational, 5 µs entry, 9 µs exit, idle 0.0001 W scale, APW 2 and APS 2.
        var psd = b.AsSpan(2048 + 32, 32);
        BinaryPrimitives.WriteUInt16LittleEndian(psd, 800);
        psd[3] = 0x02;
        BinaryPrimitives.WriteUInt32LittleEndian(psd[4..], 5);
        BinaryPrimitives.WriteUInt32LittleEndian(psd[8..], 9);
        psd[12] = 1; psd[18] = 1 << 6; psd[22] = 2 | 2 << 6;

        var id = IdentifyController.Parse(b);
        Assert.Equal(6, id.RecommendedArbitrationBurst);
        Assert.Equal(0x525400u, id.IeeeOui);
        Assert.Equal(0x300u, id.OptionalAsyncEvents);
        Assert.Equal(OptionalAdminCommands.FormatNvm | OptionalAdminCommands.Firmware | OptionalAdminCommands.NamespaceManagement, id.OptionalAdminCommands);
        Assert.Equal(3, id.AsyncEventRequestLimit);
        Assert.Equal(1, id.FirmwareSlots);
        Assert.Equal(LogPageAttributes.CommandEffects | LogPageAttributes.ExtendedData, id.LogPageAttributes);
        Assert.Equal(63, id.ErrorLogPageEntries);
        Assert.Equal(373, id.CriticalTemperatureKelvin);
        Assert.Equal((UInt128)1 << 100, id.TotalNvmCapacity);
        Assert.Equal((UInt128)12345, id.UnallocatedNvmCapacity);
        Assert.Equal(0xABCD, id.OptionalFabricCommands);
        Assert.Equal("10111213-1415-1617-1819-1a1b1c1d1e1f", id.FruGuidText);
        Assert.Equal(2, id.PowerStates.Count);
        var p1 = id.PowerStates[1];
        Assert.Equal(800, p1.MaxPower);
        Assert.True(p1.NonOperational);
        Assert.Equal(5u, p1.EntryLatency);
        Assert.Equal(9u, p1.ExitLatency);
        Assert.Equal(1, p1.IdlePowerScale);
        Assert.Equal(2, p1.ActivePowerWorkload);
        Assert.Equal(2, p1.ActivePowerScale);

        var json = id.NvmeCliFields().ToDictionary(f => f.JsonName, f => f.Value);
        Assert.Equal("VFIOLAB0001" + new string(' ', 9), json["sn"]);
        Assert.Equal("nqn.2019-08.org.qemu:VFIOLAB0001", json["subnqn"]);
        Assert.Equal((UInt128)1 << 100, json["tnvmcap"]);
        Assert.Equal(0x525400u, json["ieee"]);
        string[] expected = ["vid", "ssvid", "sn", "mn", "fr", "rab", "ieee", "cmic", "mdts", "cntlid", "ver", "rtd3r", "rtd3e", "oaes",
            "ctratt", "rrls", "cntrltype", "fguid", "crdt1", "crdt2", "crdt3", "nvmsr", "vwci", "mec", "oacs", "acl", "aerl", "frmw", "lpa",
            "elpe", "npss", "avscc", "apsta", "wctemp", "cctemp", "mtfa", "hmpre", "hmmin", "tnvmcap", "unvmcap", "rpmbs", "edstt", "dsto",
            "fwug", "kas", "hctma", "mntmt", "mxtmt", "sanicap", "hmminds", "hmmaxd", "nsetidmax", "endgidmax", "anatt", "anacap",
            "anagrpmax", "nanagrpid", "pels", "domainid", "megcap", "sqes", "cqes", "maxcmd", "nn", "oncs", "fuses", "fna", "vwc", "awun",
            "awupf", "icsvscc", "nwpc", "acwu", "ocfs", "sgls", "mnan", "maxdna", "maxcna", "subnqn", "ioccsz", "iorcsz", "icdoff",
            "fcatt", "msdbd", "ofcs", "psds"];
        Assert.Equal(expected, id.NvmeCliFields().Select(f => f.JsonName));
        string[] psdNames = ["max_power", "max_power_scale", "non-operational_state", "entry_lat", "exit_lat", "read_tput", "read_lat",
            "write_tput", "write_lat", "idle_power", "idle_scale", "active_power", "active_power_work", "active_scale"];
        Assert.Equal(psdNames, p1.NvmeCliFields().Select(f => f.JsonName));
    }

    [Fact]
    public void ThirtyTwoPowerStatesAtMost()
    {
        var b = IdentifyTests.QemuController();
        b[263] = 0xFF;   // NPSS out of range: only the 32 descriptors the structure holds are read
        Assert.Equal(32, IdentifyController.Parse(b).PowerStates.Count);
        // A structure of all ones (a device that answers garbage) still maps to every field without throwing.
        var junk = new byte[4096];
        junk.AsSpan().Fill(0xFF);
        var fields = IdentifyController.Parse(junk).NvmeCliFields().ToList();
        Assert.Equal(86, fields.Count);
        Assert.Equal(UInt128.MaxValue, fields.Single(f => f.JsonName == "tnvmcap").Value);
        Assert.Equal(32, Assert.IsType<List<List<(string JsonName, object Value)>>>(fields[^1].Value).Count);
    }

    [Fact]
    public void SmartLogFieldsAndShortData()
    {
        var d = new byte[512];
        d[0] = 0x05;
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(1), 300);
        d[3] = 90; d[4] = 10; d[5] = 120; d[6] = 1;
        BinaryPrimitives.WriteUInt128LittleEndian(d.AsSpan(32), UInt128.MaxValue);
        BinaryPrimitives.WriteUInt128LittleEndian(d.AsSpan(176), 7);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(196), 11);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(214), 320);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(228), 99);
        var s = SmartLog.Parse(d);
        Assert.Equal(CriticalWarnings.AvailableSpareLow | CriticalWarnings.ReliabilityDegraded, s.CriticalWarning);
        Assert.Equal(27, s.CompositeTemperatureCelsius);
        Assert.Equal(120, s.PercentageUsed);
        Assert.Equal(UInt128.MaxValue, s.DataUnitsRead);
        Assert.Equal((UInt128)7, s.ErrorLogEntries);
        Assert.Equal(11u, s.CriticalTemperatureTime);
        Assert.Equal((ushort)320, s.TemperatureSensors[7]);
        Assert.Equal(99u, s.ThermalTemp2TotalTime);
        var names = s.NvmeCliFields().Select(f => f.JsonName).ToList();
        Assert.Contains("temperature_sensor_8", names);
        Assert.DoesNotContain("temperature_sensor_1", names);
        Assert.Equal("endurance_grp_critical_warning_summary", names[5]);
        Assert.Equal("thm_temp2_total_time", names[^1]);
        Assert.Throws<FormatException>(() => SmartLog.Parse(new byte[511]));
    }

    [Fact]
    public void ErrorLogEntriesParseOnlyWhatArrived()
    {
        var d = new byte[64 * 3 + 10];
        BinaryPrimitives.WriteUInt64LittleEndian(d, 9);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(8), 2);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(10), 77);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(12), (ushort)(NvmeStatus.Create(GenericStatusCode.LbaOutOfRange).Value << 1 | 1));
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(16), 0x1234);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(24), 1);
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(128), 8);   // entry 2; entry 1 empty
        var log = ErrorLogEntry.ParseLog(d, maxEntries: 256);
        Assert.Equal(2, log.Count);
        Assert.Equal((ushort)77, log[0].CommandId);
        Assert.True(log[0].PhaseTag);
        Assert.Equal((byte)GenericStatusCode.LbaOutOfRange, log[0].Status.Code);
        Assert.Equal(0x1234UL, log[0].Lba);
        Assert.Equal(8UL, log[1].ErrorCount);
        Assert.Single(ErrorLogEntry.ParseLog(d, maxEntries: 1));
        Assert.Throws<FormatException>(() => ErrorLogEntry.Parse(new byte[63]));
    }

    [Fact]
    public void FirmwareEffectsAndChangedNamespaces()
    {
        var fw = new byte[512];
        fw[0] = 0x21;
        "2.0.1   "u8.CopyTo(fw.AsSpan(16));
        var f = FirmwareSlotLog.Parse(fw);
        Assert.Equal(1, f.ActiveSlot);
        Assert.Equal(2, f.NextSlot);
        Assert.Equal("2.0.1", f.SlotRevisions[1]);
        Assert.Equal(["Active Firmware Slot (afi)", "Firmware Rev Slot 2"], f.NvmeCliFields().Select(x => x.JsonName));
        Assert.Throws<FormatException>(() => FirmwareSlotLog.Parse(new byte[60]));

        var ce = new byte[4096];
        BinaryPrimitives.WriteUInt32LittleEndian(ce.AsSpan(4 * 0x80), 0x1 | 0x8 | 0x2_0000);
        BinaryPrimitives.WriteUInt32LittleEndian(ce.AsSpan(1024 + 4 * 1), 0x3);
        var e = CommandEffectsLog.Parse(ce);
        Assert.Equal(CommandEffects.Supported | CommandEffects.NamespaceInventoryChange | CommandEffects.SubmitAloneInController, e.Admin[0x80]);
        Assert.Equal(CommandEffects.Supported | CommandEffects.LogicalBlockContentChange, e.Io[1]);
        Assert.Throws<FormatException>(() => CommandEffectsLog.Parse(new byte[2044]));

        var ns = new byte[4096];
        BinaryPrimitives.WriteUInt32LittleEndian(ns, 3);
        BinaryPrimitives.WriteUInt32LittleEndian(ns.AsSpan(4), 9);
        Assert.Equal([3u, 9u], ChangedNamespaceList.Parse(ns).Nsids);
        Assert.Equal([3u], ChangedNamespaceList.Parse(ns.AsSpan(0, 6)).Nsids);   // a partial entry is not read
        BinaryPrimitives.WriteUInt32LittleEndian(ns, uint.MaxValue);
        var overflow = ChangedNamespaceList.Parse(ns);
        Assert.True(overflow.MoreThan1024);
        Assert.Empty(overflow.Nsids);
    }

    [Fact]
    public void GetLogPageAndAerEncodings()
    {
        // 1 MiB = 262144 dwords, 0's based 262143 = 0x3FFFF: NUMDL 0xFFFF, NUMDU 3.
        var c = NvmeCommand.GetLogPage(0x02, uint.MaxValue, 0x1_0000_0004, 1 << 20, retainAsyncEvent: true);
        Assert.Equal((byte)AdminOpcode.GetLogPage, c.Opcode);
        Assert.Equal(0x02u | 1u << 15 | 0xFFFFu << 16, c.Cdw10);
        Assert.Equal(3u, c.Cdw11);
        Assert.Equal(4u, c.Cdw12);
        Assert.Equal(1u, c.Cdw13);
        Assert.Equal(((byte)0x02, true, 1L << 20, 0x1_0000_0004UL), c.LogPageRequest);
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.GetLogPage(2, 0, 0, 6, false));
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.GetLogPage(2, 0, 0, 0, false));
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.GetLogPage(2, 0, 2, 4, false));

        Assert.Equal((byte)AdminOpcode.AsynchronousEventRequest, NvmeCommand.AsyncEventRequest().Opcode);
        var info = new AsyncEventInfo(AsyncEventInfo.Encode(AsyncEventType.Notice, 0, 0x04));
        Assert.Equal(0x040002u, info.Dw0);
        Assert.Equal(AsyncEventType.Notice, info.Type);
        Assert.Equal(0x04, info.LogPage);
        var set = NvmeCommand.SetAsyncEventConfiguration(AsyncEventConfiguration.SmartCriticalWarnings | AsyncEventConfiguration.NamespaceAttributeNotices);
        Assert.Equal(0x0Bu, set.Cdw10);
        Assert.Equal(0x1FFu, set.Cdw11);
        Assert.Equal(0x30Bu, NvmeCommand.GetAsyncEventConfiguration(3).Cdw10);
    }
}
