using System.Buffers.Binary;
using Vfio.Devices;

namespace Vfio.Tests.Devices;

/// <summary>The AER extended capability (PCIe Base 6.0 §7.8.4) found, read and decoded from synthetic config spaces.</summary>
public class AerTests
{
    private const int Aer = 0x148;

    /// <summary>
    /// 4 KiB config space with two extended capabilities: Device Serial Number at 0x100, then AER v2 at 0x148 with
    /// a Poisoned TLP Received (non-fatal), an Uncorrectable Internal Error (fatal), a Bad TLP and the header of the
    /// poisoned write logged, First Error Pointer 12.
    /// </summary>
    private static byte[] ConfigWithAer()
    {
        var b = new byte[4096];
        void W(int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(o), v);
        W(0x100, 0x0003u | (1u << 16) | ((uint)Aer << 20));
        W(Aer, 0x0001u | (2u << 16));
        W(Aer + 0x04, (1u << 12) | (1u << 22));                 // uncorrectable status
        W(Aer + 0x08, 1u << 20);                                // UR masked
        W(Aer + 0x0C, (1u << 4) | (1u << 5) | (1u << 22));      // DLP, SDN, internal: fatal
        W(Aer + 0x10, 1u << 6);                                 // Bad TLP
        W(Aer + 0x14, 1u << 13);                                // advisory non-fatal masked
        W(Aer + 0x18, 12u | (1u << 5) | (1u << 7));              // FEP 12, ECRC generation and check capable
        W(Aer + 0x1C, 0x4000_0001); W(Aer + 0x20, 0x0000_00ff); W(Aer + 0x24, 0xfee0_0000); W(Aer + 0x28, 0);
        return b;
    }

    [Fact]
    public void TheCapabilityIsFoundAfterAnotherAndDecodedWithSpecNames()
    {
        var aer = new PciConfigSpace(new MemoryRegion(ConfigWithAer())).FindAer();
        Assert.NotNull(aer);
        Assert.Equal(Aer, aer.Offset);
        Assert.Equal(2, aer.Version);
        var s = aer.Read();
        Assert.Equal(AerUncorrectableErrors.PoisonedTlpReceived | AerUncorrectableErrors.UncorrectableInternalError, s.UncorrectableStatus);
        Assert.Equal(AerUncorrectableErrors.UnsupportedRequestError, s.UncorrectableMask);
        Assert.Equal(AerUncorrectableErrors.UncorrectableInternalError, s.FatalErrors);
        Assert.Equal(AerCorrectableErrors.BadTlp, s.CorrectableStatus);
        Assert.Equal(AerCorrectableErrors.AdvisoryNonFatalError, s.CorrectableMask);
        Assert.Equal(12, s.Control.FirstErrorPointer);
        Assert.Equal(AerUncorrectableErrors.PoisonedTlpReceived, s.FirstError);
        Assert.True(s.Control.EcrcGenerationCapable && s.Control.EcrcCheckCapable);
        Assert.False(s.Control.EcrcGenerationEnable || s.Control.EcrcCheckEnable || s.Control.MultipleHeaderRecordingCapable);
        Assert.Equal([0x4000_0001u, 0xffu, 0xfee0_0000u, 0u], s.HeaderLog);
        Assert.True(s.HasUncorrectable && s.HasCorrectable);
        Assert.Equal("AER at 0x148: uncorrectable [Poisoned TLP Received, Uncorrectable Internal Error] fatal [Uncorrectable Internal Error] " +
            "first Poisoned TLP Received, correctable [Bad TLP], header log 40000001 000000ff fee00000 00000000", s.ToString());
    }

    [Fact]
    public void TheFirstErrorPointerCountsOnlyWhileItsStatusBitIsSet()
    {
        var b = ConfigWithAer();
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(Aer + 0x04), 1u << 22);   // the poisoned TLP was cleared
        var s = new PciConfigSpace(new MemoryRegion(b)).FindAer()!.Read();
        Assert.Null(s.FirstError);
        Assert.Equal(12, s.Control.FirstErrorPointer);
    }

    [Fact]
    public void ClearingWritesOnesOnlyForTheBitsAsked()
    {
        var region = new MemoryRegion(ConfigWithAer());
        var aer = new PciConfigSpace(region).FindAer()!;
        aer.ClearUncorrectable(AerUncorrectableErrors.PoisonedTlpReceived);
        aer.ClearCorrectable(AerCorrectableErrors.BadTlp | AerCorrectableErrors.ReceiverError);
        aer.SetCorrectableMask(AerCorrectableErrors.CorrectedInternalError);
        Assert.Equal([((ulong)Aer + 0x04, 4, 1ul << 12), ((ulong)Aer + 0x10, 4, (1ul << 6) | 1ul), ((ulong)Aer + 0x14, 4, 1ul << 14)], region.Writes);
    }

    [Fact]
    public void ClearLoggedClearsExactlyWhatWasLogged()
    {
        var region = new MemoryRegion(ConfigWithAer());
        var logged = new PciConfigSpace(region).FindAer()!.ClearLogged();
        Assert.Equal(AerUncorrectableErrors.PoisonedTlpReceived | AerUncorrectableErrors.UncorrectableInternalError, logged.UncorrectableStatus);
        Assert.Equal([((ulong)Aer + 0x04, 4, (1ul << 12) | (1ul << 22)), ((ulong)Aer + 0x10, 4, 1ul << 6)], region.Writes);
    }

    [Fact]
    public void NoAerMeansNull()
    {
        var b = ConfigWithAer();
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(0x100), 0x0003u | (1u << 16));   // DSN, end of list
        Assert.Null(new PciConfigSpace(new MemoryRegion(b)).FindAer());
        Assert.Null(new PciConfigSpace(new MemoryRegion(new byte[256])).FindAer());   // conventional config space
    }

    [Fact]
    public void NamesCoverUnnamedBitsToo()
    {
        Assert.Equal("none", AerNames.Describe(AerUncorrectableErrors.None));
        Assert.Equal("Data Link Protocol Error, bit 31", AerNames.Describe(AerUncorrectableErrors.DataLinkProtocolError | (AerUncorrectableErrors)(1u << 31)));
        Assert.Equal("Receiver Error, Header Log Overflow", AerNames.Describe(AerCorrectableErrors.ReceiverError | AerCorrectableErrors.HeaderLogOverflow));
    }

    [Fact]
    public void AnErrorInterruptIsClassifiedByWhatAerLogged()
    {
        var b = ConfigWithAer();
        var s = new PciConfigSpace(new MemoryRegion(b)).FindAer()!.Read();
        Assert.Equal(PciErrorSeverity.Fatal, PciErrorReport.Classify(s));   // the internal error has fatal severity
        Assert.Equal(PciErrorSeverity.NonFatal, PciErrorReport.Classify(s with { UncorrectableStatus = AerUncorrectableErrors.PoisonedTlpReceived }));
        Assert.Equal(PciErrorSeverity.NonFatal, PciErrorReport.Classify(   // a fatal-severity error that is masked does not count as fatal
            s with { UncorrectableMask = AerUncorrectableErrors.UncorrectableInternalError }));
        var cleared = s with { UncorrectableStatus = AerUncorrectableErrors.None };
        Assert.Equal(PciErrorSeverity.NonFatal, PciErrorReport.Classify(cleared));   // the host cleared it first: still uncorrectable
        Assert.Equal(PciErrorSeverity.Correctable, PciErrorReport.Classify(cleared, correctableSignal: true));
        Assert.Equal(PciErrorSeverity.NonFatal, PciErrorReport.Classify(null));
        Assert.True(new PciErrorReport(default, PciErrorSeverity.Fatal, null).IsUncorrectable);
    }
}
