using Vfio.Spec.Nvme;

namespace Vfio.Spec.Tests.Nvme;

/// <summary>
/// The controller registers in BAR0 against NVMe Base 1.4 §3.1 "Register Definition" (NVMe Base 2.0
/// calls them controller properties): offsets, and the bit position of every CAP, VS, CC, CSTS and
/// AQA field the project uses.
/// </summary>
public sealed class ControllerRegisterTests
{
    [Fact]
    public void RegisterOffsetsAreThoseOfTheRegisterMap()
    {
        // §3.1: CAP 00h (8 bytes), VS 08h, INTMS 0Ch, INTMC 10h, CC 14h, (18h reserved), CSTS 1Ch, (NSSR 20h), AQA 24h,
        // ASQ 28h (8 bytes), ACQ 30h (8 bytes); §3.1.24: the doorbells start at 1000h.
        Assert.Equal(0x00UL, ControllerRegister.Cap);
        Assert.Equal(0x08UL, ControllerRegister.Vs);
        Assert.Equal(0x0CUL, ControllerRegister.Intms);
        Assert.Equal(0x10UL, ControllerRegister.Intmc);
        Assert.Equal(0x14UL, ControllerRegister.Cc);
        Assert.Equal(0x1CUL, ControllerRegister.Csts);
        Assert.Equal(0x24UL, ControllerRegister.Aqa);
        Assert.Equal(0x28UL, ControllerRegister.Asq);
        Assert.Equal(0x30UL, ControllerRegister.Acq);
        Assert.Equal(0x1000UL, ControllerRegister.DoorbellBase);
    }

    [Theory]
    [InlineData(0, 0, 0x1000, 0x1004)]
    [InlineData(0, 1, 0x1008, 0x100C)]
    [InlineData(0, 5, 0x1028, 0x102C)]
    [InlineData(1, 1, 0x1010, 0x1018)]
    [InlineData(2, 3, 0x1060, 0x1070)]
    public void DoorbellOffsetsFollowTheStride(int stride, int qid, ulong sq, ulong cq)
    {
        // §3.1.24 SQyTDBL at 1000h + (2y × (4 << CAP.DSTRD)); §3.1.25 CQyHDBL at 1000h + ((2y + 1) × (4 << CAP.DSTRD)).
        Assert.Equal(sq, ControllerRegister.SubmissionTailDoorbell(qid, stride));
        Assert.Equal(cq, ControllerRegister.CompletionHeadDoorbell(qid, stride));
    }

    [Fact]
    public void CapabilitiesDecodeEveryField()
    {
        // §3.1.1 CAP, as QEMU 7.2 reports it: MQES 0x7ff, CQR, TO 0xf, DSTRD 0, CSS NVM, MPSMIN 0, MPSMAX 4.
        var cap = new ControllerCapabilities(0x0040_0020_0F01_07FF);
        Assert.Equal(2048, cap.MaxQueueEntries);
        Assert.True(cap.ContiguousQueuesRequired);
        Assert.Equal(TimeSpan.FromMilliseconds(7500), cap.ReadyTimeout);
        Assert.Equal(0, cap.DoorbellStride);
        Assert.True(cap.SupportsNvmCommandSet);
        Assert.Equal(12, cap.MinPageShift);
        Assert.Equal(16, cap.MaxPageShift);
        Assert.False(cap.SubsystemResetSupported);
    }

    [Fact]
    public void CapabilityFieldsSitAtTheirBits()
    {
        // §3.1.1: MQES 15:00 (0's based), CQR 16, TO 31:24 (500 ms units), DSTRD 35:32, NSSRS 36, CSS 44:37,
        // MPSMIN 51:48, MPSMAX 55:52 (page size 2^(12 + n)). Each field alone, so a shifted mask cannot pass.
        Assert.Equal(1, new ControllerCapabilities(0).MaxQueueEntries);
        Assert.Equal(65536, new ControllerCapabilities(0xFFFF).MaxQueueEntries);
        Assert.True(new ControllerCapabilities(1UL << 16).ContiguousQueuesRequired);
        Assert.False(new ControllerCapabilities(1UL << 15 | 1UL << 17).ContiguousQueuesRequired);
        Assert.Equal(0xAB, new ControllerCapabilities(0xABUL << 24).TimeoutUnits);
        Assert.Equal(0, new ControllerCapabilities(0xFFUL << 16 | 0xFFUL << 32).TimeoutUnits);
        Assert.Equal(0xF, new ControllerCapabilities(0xFUL << 32).DoorbellStride);
        Assert.Equal(0, new ControllerCapabilities(1UL << 36).DoorbellStride);
        Assert.True(new ControllerCapabilities(1UL << 36).SubsystemResetSupported);
        Assert.Equal(0xFF, new ControllerCapabilities(0xFFUL << 37).CommandSetsSupported);
        Assert.True(new ControllerCapabilities(1UL << 37).SupportsNvmCommandSet);
        Assert.False(new ControllerCapabilities(1UL << 38).SupportsNvmCommandSet);
        Assert.Equal(12 + 0xF, new ControllerCapabilities(0xFUL << 48).MinPageShift);
        Assert.Equal(12, new ControllerCapabilities(0xFUL << 48).MaxPageShift);
        Assert.Equal(12 + 0xF, new ControllerCapabilities(0xFUL << 52).MaxPageShift);
        Assert.Equal(12, new ControllerCapabilities(0xFUL << 52).MinPageShift);
    }

    [Fact]
    public void VersionIsMajorMinorTertiary()
    {
        // §3.1.2 VS: MJR 31:16, MNR 15:08, TER 07:00; 1.4.0 is 0001_0400h.
        var v = new NvmeVersion(0x0002_0103);
        Assert.Equal(2, v.Major);
        Assert.Equal(1, v.Minor);
        Assert.Equal(3, v.Tertiary);
        Assert.Equal("1.4.0", new NvmeVersion(0x0001_0400).ToString());
    }

    [Fact]
    public void ControllerConfigurationSetsEntrySizesPageSizeAndShutdown()
    {
        // §3.1.5 CC: EN 0, CSS 06:04, MPS 10:07, AMS 13:11, SHN 15:14, IOSQES 19:16, IOCQES 23:20.
        uint cc = ControllerConfiguration.Encode(enable: true, pageShift: 12);
        Assert.Equal(0x0046_0001u, cc);
        Assert.Equal(0x0046_0000u | 1u << 7, ControllerConfiguration.Encode(false, 13));
        Assert.Equal(0x0046_4001u, ControllerConfiguration.WithShutdown(cc, ShutdownNotification.Normal));
        Assert.Equal(0x0046_8001u, ControllerConfiguration.WithShutdown(0x0046_4001u, ShutdownNotification.Abrupt));
        Assert.Throws<ArgumentOutOfRangeException>(() => ControllerConfiguration.Encode(true, 11));
    }

    [Fact]
    public void ControllerConfigurationFieldsSitAtTheirBits()
    {
        // §3.1.5: EN bit 0; MPS 10:07 is 2^(12 + MPS); CSS 06:04 and AMS 13:11 stay 000b (NVM, round robin);
        // SHN 15:14 is 01b normal, 10b abrupt; IOSQES 19:16 = 6 (64-byte SQE, §4.2); IOCQES 23:20 = 4 (16-byte CQE, §4.6).
        Assert.Equal(1u, ControllerConfiguration.Enable);
        uint cc = ControllerConfiguration.Encode(enable: false, pageShift: 12 + 0xF);
        Assert.Equal(0xFu, (cc >> 7) & 0xF);
        Assert.Equal(0u, cc & 1);
        Assert.Equal(0u, (cc >> 4) & 7);
        Assert.Equal(0u, (cc >> 11) & 7);
        Assert.Equal(6u, (cc >> 16) & 0xF);
        Assert.Equal(4u, (cc >> 20) & 0xF);
        Assert.Equal(0u, cc >> 24);
        Assert.Equal(1, (int)ShutdownNotification.Normal);
        Assert.Equal(2, (int)ShutdownNotification.Abrupt);
        Assert.Equal(1u << 14, ControllerConfiguration.Encode(false, 12, ShutdownNotification.Normal) & 3u << 14);
        Assert.Equal(0u, ControllerConfiguration.WithShutdown(ControllerConfiguration.Encode(false, 12, ShutdownNotification.Abrupt), ShutdownNotification.None) & 3u << 14);
    }

    [Fact]
    public void StatusAndAdminQueueAttributesDecode()
    {
        // §3.1.6 CSTS: RDY 0, CFS 1, SHST 03:02 (00b normal, 01b occurring, 10b complete); §3.1.8 AQA: ASQS 11:00 and
        // ACQS 27:16, both 0's based.
        Assert.True(ControllerConfiguration.IsReady(0x1));
        Assert.False(ControllerConfiguration.IsReady(0x2));
        Assert.True(ControllerConfiguration.IsFatal(0x3));
        Assert.False(ControllerConfiguration.IsFatal(0x1));
        Assert.Equal(ShutdownStatus.Complete, ControllerConfiguration.GetShutdownStatus(0x9));
        Assert.Equal(ShutdownStatus.Occurring, ControllerConfiguration.GetShutdownStatus(0x4));
        Assert.Equal(ShutdownStatus.Normal, ControllerConfiguration.GetShutdownStatus(0x13));
        Assert.Equal(0x001F_001Fu, ControllerConfiguration.EncodeAdminQueueAttributes(32, 32));
        Assert.Equal(0x0FFF_0001u, ControllerConfiguration.EncodeAdminQueueAttributes(2, 4096));
        Assert.Throws<ArgumentOutOfRangeException>(() => ControllerConfiguration.EncodeAdminQueueAttributes(4097, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => ControllerConfiguration.EncodeAdminQueueAttributes(2, 1));
        Assert.Equal("1.4.0", new NvmeVersion(0x0001_0400).ToString());
    }
}
