using Vfio.Dma;
using Vfio.Emulation.Nvme;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>Identify Controller, Get Log Page and Feature 0Bh: the model and the driver together.</summary>
public sealed class LogPageTests
{
    private static NvmeController Open(EmulatedNvme dev, int aers = 0, NvmeControllerOptions? options = null) =>
        NvmeController.Open(dev, (options ?? new NvmeControllerOptions()) with { MinimumReadyTimeout = TimeSpan.FromSeconds(1), AsyncEventRequests = aers });

    private static void StillUsable(NvmeController c) =>
        Assert.Equal(c.Identity.SerialNumber, IdentifyController.Parse(c.Identify(IdentifyCns.Controller, 0)).SerialNumber);

    [Fact]
    public void IdentifyControllerIsFilledLikeARealController()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions { Serial = "LOGS-1" });
        using var c = Open(dev);
        var id = c.Identity;
        Assert.Equal(3, id.AsyncEventRequestLimit);
        Assert.Equal(255, id.ErrorLogPageEntries);
        Assert.True(id.LogPageAttributes.HasFlag(LogPageAttributes.ExtendedData));
        Assert.True(id.LogPageAttributes.HasFlag(LogPageAttributes.CommandEffects));
        Assert.Equal(1u << 8, id.OptionalAsyncEvents);
        Assert.Equal(343, id.WarningTemperatureKelvin);
        Assert.Equal(353, id.CriticalTemperatureKelvin);
        Assert.Equal(1, id.FirmwareSlots);
        Assert.Equal(1, id.ControllerId);
        Assert.Equal(0x525400u, id.IeeeOui);
        var ps = Assert.Single(id.PowerStates);
        Assert.Equal(2500, ps.MaxPower);
        Assert.False(ps.NonOperational);

        var fields = id.NvmeCliFields().ToList();
        Assert.Equal(fields.Count, fields.Select(f => f.JsonName).Distinct().Count());
        Assert.Equal("vid", fields[0].JsonName);
        Assert.Equal((ushort)0x1b36, fields[0].Value);
        // nvme-cli keeps the padding of sn/mn/fr (it copies the whole field with "%-.*s").
        Assert.Equal("LOGS-1" + new string(' ', 14), fields.Single(f => f.JsonName == "sn").Value);
        Assert.Equal("1.0     ", fields.Single(f => f.JsonName == "fr").Value);
        Assert.Equal((byte)3, fields.Single(f => f.JsonName == "aerl").Value);
        Assert.IsType<UInt128>(fields.Single(f => f.JsonName == "tnvmcap").Value);
        Assert.DoesNotContain(fields, f => f.JsonName == "subnqn");   // empty: left out, as nvme-cli does
        var psds = Assert.IsType<List<List<(string JsonName, object Value)>>>(fields[^1].Value);
        Assert.Equal("max_power", Assert.Single(psds)[0].JsonName);
    }

    [Fact]
    public void SmartCountersMoveWithIo()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        dev.Model.ExtraPowerOnTime = TimeSpan.FromHours(5.5);
        var before = c.GetSmartLog();
        Assert.Equal(0UL, (ulong)before.DataUnitsWritten);
        Assert.Equal(310, before.CompositeTemperatureKelvin);
        Assert.Equal(37, before.CompositeTemperatureCelsius);
        Assert.Equal(1UL, (ulong)before.PowerCycles);
        Assert.Equal(5UL, (ulong)before.PowerOnHours);

        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(256 * 512, new DmaAllocationOptions { Contiguous = false });
        var ns = c.Namespaces[0];
        for (int i = 0; i < 8; i++) { q.Write(ns, (ulong)(i * 256), 256, buf); }   // 2048 units of 512 bytes
        q.Read(ns, 0, 8, buf);
        dev.Model.CompositeTemperatureKelvin = 350;

        var after = c.GetSmartLog();
        Assert.Equal(3UL, (ulong)after.DataUnitsWritten);      // 2048 / 1000, rounded up (§5.16.1.3)
        Assert.Equal(1UL, (ulong)after.DataUnitsRead);         // 8 / 1000, rounded up
        Assert.Equal(8UL, (ulong)after.HostWriteCommands);
        Assert.Equal(1UL, (ulong)after.HostReadCommands);
        Assert.Equal(350, after.CompositeTemperatureKelvin);
        Assert.Equal((ushort)350, after.TemperatureSensors[0]);
        var json = after.NvmeCliFields().ToDictionary(f => f.JsonName, f => f.Value);
        Assert.Equal((UInt128)3, json["data_units_written"]);
        Assert.Equal((ushort)350, json["temperature"]);
        Assert.Equal((ushort)350, json["temperature_sensor_1"]);
        Assert.False(json.ContainsKey("temperature_sensor_2"));
    }

    [Fact]
    public void FailedCommandsGoToTheErrorLogNewestFirst()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        dev.FailNextIo = NvmeStatus.Create(StatusCodeType.MediaError, (byte)MediaErrorStatusCode.UnrecoveredReadError, doNotRetry: true);
        Assert.Throws<NvmeCommandException>(() => q.Read(c.Namespaces[0], 42, 1, buf));
        var bad = Assert.Throws<NvmeCommandException>(() => c.GetLogPage(0x7F, 0, 0, 512));
        Assert.Equal((byte)CommandSpecificStatusCode.InvalidLogPage, bad.StatusCode);

        var log = c.GetErrorLog();
        Assert.Equal(2, log.Count);
        Assert.Equal(2UL, log[0].ErrorCount);
        Assert.Equal(0, log[0].SubmissionQueueId);
        Assert.Equal((byte)AdminOpcode.GetLogPage, log[0].Opcode);
        Assert.Equal(1UL, log[1].ErrorCount);
        Assert.Equal(q.QueueId, log[1].SubmissionQueueId);
        Assert.Equal(42UL, log[1].Lba);
        Assert.Equal(1u, log[1].Nsid);
        Assert.Equal(StatusCodeType.MediaError, log[1].Status.Type);
        var smart = c.GetSmartLog();
        Assert.Equal(2UL, (ulong)smart.ErrorLogEntries);
        Assert.Equal(1UL, (ulong)smart.MediaErrors);
    }

    [Fact]
    public void OffsetsReadThePartOfThePageAskedFor()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        var full = c.GetLogPage((byte)LogPageId.CommandsSupportedAndEffects, 0, 0, 4096);
        Assert.Equal(full.AsSpan(1024, 1024).ToArray(), c.GetLogPage((byte)LogPageId.CommandsSupportedAndEffects, 0, 1024, 1024));
        var effects = CommandEffectsLog.Parse(full);
        Assert.True(effects.Admin[(int)AdminOpcode.GetLogPage].HasFlag(CommandEffects.Supported));
        Assert.True(effects.Io[(int)NvmOpcode.Write].HasFlag(CommandEffects.LogicalBlockContentChange));
        Assert.Equal(CommandEffects.None, effects.Admin[(int)AdminOpcode.Abort]);
        var fw = c.GetFirmwareSlotLog();
        Assert.Equal(1, fw.ActiveSlot);
        Assert.Equal("1.0", fw.SlotRevisions[0]);
        // An offset past the end of the page is the controller's to refuse.
        var past = Assert.Throws<NvmeCommandException>(() => c.GetLogPage((byte)LogPageId.SmartHealth, uint.MaxValue, 512, 4));
        Assert.Equal((byte)GenericStatusCode.InvalidField, past.StatusCode);
        StillUsable(c);
    }

    [Fact]
    public void ReadsAboveTheTransferLimitAreSplitIntoPieces()
    {
        // MDTS 1: 8 KiB per command, so the 16 KiB error log takes two Get Log Page commands.
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions { Mdts = 1 });
        using var c = Open(dev);
        Assert.Equal(8192, c.MaxAdminTransferBytes);
        using (var q = c.CreateIoQueue())
        {
            using var buf = dev.Dma.Allocate(4096);
            dev.FailNextIo = NvmeStatus.Create(GenericStatusCode.InternalError);
            Assert.Throws<NvmeCommandException>(() => q.Read(c.Namespaces[0], 7, 1, buf));
        }
        int doorbells = dev.SubmissionDoorbells(0);
        var whole = c.GetLogPage((byte)LogPageId.ErrorInformation, 0, 0, 16384, retainAsyncEvent: true);
        Assert.Equal(2, dev.SubmissionDoorbells(0) - doorbells);
        var second = c.GetLogPage((byte)LogPageId.ErrorInformation, 0, 8192, 8192, retainAsyncEvent: true);
        Assert.Equal(whole.AsSpan(8192).ToArray(), second);
        var entry = Assert.Single(c.GetErrorLog());
        Assert.Equal(7UL, entry.Lba);
    }

    [Theory]
    [InlineData(0, 0u, 0UL, "length")]
    [InlineData(6, 0u, 0UL, "length")]
    [InlineData(NvmeController.MaxLogPageBytes + 4, 0u, 0UL, "length")]
    [InlineData(512, 0u, 2UL, "offset")]
    [InlineData(512, 0u, ulong.MaxValue - 3, "offset")]
    [InlineData(512, 2u, 0UL, "nsid")]
    [InlineData(512, 0xFFFFFFFEu, 0UL, "nsid")]
    public void BadLogPageRequestsAreRefusedBeforeTheDevice(int length, uint nsid, ulong offset, string parameter)
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        int doorbells = dev.SubmissionDoorbells(0);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => c.GetLogPage((byte)LogPageId.SmartHealth, nsid, offset, length));
        Assert.Equal(parameter, e.ParamName);
        Assert.Equal(doorbells, dev.SubmissionDoorbells(0));
        StillUsable(c);
    }

    [Fact]
    public void PerNamespaceSmartNeedsLpaBit0()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        var e = Assert.Throws<ArgumentException>(() => c.GetSmartLog(nsid: 1));
        Assert.Equal("nsid", e.ParamName);
        StillUsable(c);
    }

    [Fact]
    public void OffsetsAreRefusedWhenLpaSaysTheyAreUnsupported()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        dev.Model.ReportsLogPageOffsets = false;
        using var c = Open(dev);
        Assert.False(c.Identity.LogPageAttributes.HasFlag(LogPageAttributes.ExtendedData));
        var e = Assert.Throws<ArgumentException>(() => c.GetLogPage((byte)LogPageId.CommandsSupportedAndEffects, 0, 1024, 1024));
        Assert.Equal("offset", e.ParamName);
        Assert.Contains("LPA bit 2", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => c.GetLogPage((byte)LogPageId.ErrorInformation, 0, 0, 128 * 1024));
        Assert.Equal(4096, c.GetLogPage((byte)LogPageId.CommandsSupportedAndEffects, 0, 0, 4096).Length);
        StillUsable(c);
    }

    [Fact]
    public void ChangedNamespaceListIsClearedByAReadWithoutRae()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        Assert.Empty(c.GetChangedNamespaceList().Nsids);
        dev.Model.RaiseNamespaceAttributeChanged(1);
        dev.Model.RaiseNamespaceAttributeChanged(1);
        Assert.Equal([1u], c.GetChangedNamespaceList(retainAsyncEvent: true).Nsids);
        Assert.Equal([1u], c.GetChangedNamespaceList().Nsids);
        Assert.Empty(c.GetChangedNamespaceList().Nsids);
    }

    [Fact]
    public void Feature0BhGetAndSet()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        Assert.Equal(0u, c.ExecuteAdmin(NvmeCommand.GetAsyncEventConfiguration()));
        c.ExecuteAdmin(NvmeCommand.SetAsyncEventConfiguration(AsyncEventConfiguration.SmartCriticalWarnings | AsyncEventConfiguration.NamespaceAttributeNotices | AsyncEventConfiguration.AnaChangeNotices));
        // ANA notices are not offered (OAES bit 11 clear): the model keeps only what it supports.
        Assert.Equal(0x1FFu, c.ExecuteAdmin(NvmeCommand.GetAsyncEventConfiguration()));
        Assert.Equal(0u, c.ExecuteAdmin(NvmeCommand.GetAsyncEventConfiguration(select: 1)));
        Assert.Equal(4u, c.ExecuteAdmin(NvmeCommand.GetAsyncEventConfiguration(select: 3)));   // changeable, not saveable
        var save = NvmeCommand.SetAsyncEventConfiguration(AsyncEventConfiguration.SmartCriticalWarnings);
        save.Cdw10 |= 1u << 31;
        var e = Assert.Throws<NvmeCommandException>(() => c.ExecuteAdmin(save));
        Assert.Equal(StatusCodeType.CommandSpecific, e.StatusCodeType);
        Assert.Equal(0x0D, e.StatusCode);
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.GetAsyncEventConfiguration(select: 4));
        // A controller reset returns the feature to its default.
        c.Reset();
        Assert.Equal(0u, c.ExecuteAdmin(NvmeCommand.GetAsyncEventConfiguration()));
    }

    [Fact]
    public void SmartLogOverTheSocket()
    {
        using var dev = new EmulatedNvme(NvmeTransport.Socket, new NvmeDeviceOptions());
        using var c = Open(dev);
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        q.Write(c.Namespaces[0], 0, 8, buf);
        var smart = c.GetSmartLog();
        Assert.Equal(1UL, (ulong)smart.HostWriteCommands);
        Assert.Equal(1UL, (ulong)smart.DataUnitsWritten);
        Assert.Empty(c.GetErrorLog());
    }
}
