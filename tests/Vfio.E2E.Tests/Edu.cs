using Vfio.Devices;
using Vfio.Dma;

namespace Vfio.E2E.Tests;

/// <summary>
/// QEMU's educational device (docs/specs/edu.rst in QEMU): BAR0 is 1 MiB of registers; only 32-bit accesses
/// below 0x80, 32 or 64 bits above. DMA moves data between RAM and a 4 KiB buffer at device address 0x40000.
/// </summary>
internal sealed class Edu(IDeviceRegion bar0)
{
    public const uint Identification = 0x00, Liveness = 0x04, Factorial = 0x08, Status = 0x20,
        IrqStatus = 0x24, IrqRaise = 0x60, IrqAck = 0x64, DmaSource = 0x80, DmaDestination = 0x88,
        DmaCount = 0x90, DmaCommand = 0x98;
    public const ulong DeviceBuffer = 0x40000;
    public const int DeviceBufferSize = 4096;
    private const uint DmaStart = 1, DmaToRam = 2;
    private const uint StatusComputing = 1;

    public IDeviceRegion Bar0 { get; } = bar0;

    public uint Id => Bar0.Read32(Identification);

    public uint ComputeFactorial(uint n, TimeSpan timeout)
    {
        Bar0.Write32(Factorial, n);
        WaitUntil(() => (Bar0.Read32(Status) & StatusComputing) == 0, timeout, "factorial");
        return Bar0.Read32(Factorial);
    }

    /// <summary>Copies <paramref name="count"/> bytes from RAM at <paramref name="ram"/> into the device buffer.</summary>
    public void DmaFromRam(ulong ram, ulong deviceOffset, uint count, TimeSpan timeout) =>
        Dma(ram, DeviceBuffer + deviceOffset, count, DmaStart, timeout);

    /// <summary>Copies <paramref name="count"/> bytes from the device buffer to RAM at <paramref name="ram"/>.</summary>
    public void DmaToRamAt(ulong deviceOffset, ulong ram, uint count, TimeSpan timeout) =>
        Dma(DeviceBuffer + deviceOffset, ram, count, DmaStart | DmaToRam, timeout);

    private void Dma(ulong src, ulong dst, uint count, uint command, TimeSpan timeout)
    {
        Bar0.Write64(DmaSource, src);
        Bar0.Write64(DmaDestination, dst);
        Bar0.Write64(DmaCount, count);
        Bar0.Write64(DmaCommand, command);
        WaitUntil(() => (Bar0.Read64(DmaCommand) & DmaStart) == 0, timeout, "DMA");
    }

    /// <summary>
    /// Sends <paramref name="count"/> random bytes (seeded) from the start of <paramref name="buffer"/> through the device
    /// buffer and back to offset 4096 of it, with the buffer marked in use meanwhile, and asserts they arrive unchanged.
    /// The caller enables bus mastering; <paramref name="buffer"/> must hold at least 4096 + count bytes.
    /// </summary>
    public void AssertDmaRoundTrip(DmaBuffer buffer, int count, int seed, TimeSpan timeout)
    {
        var pattern = new byte[count];
        new Random(seed).NextBytes(pattern);
        pattern.CopyTo(buffer.Span);
        buffer.Span.Slice(4096, count).Clear();
        using (buffer.MarkInUse("edu DMA engine"))
        {
            DmaFromRam(buffer.DeviceAddress.Value, 0, (uint)count, timeout);
            DmaToRamAt(0, buffer.GetDeviceAddress(4096).Value, (uint)count, timeout);
        }
        Assert.Equal(pattern, buffer.Span.Slice(4096, count).ToArray());
    }

    public void RaiseInterrupt(uint value) => Bar0.Write32(IrqRaise, value);

    public void AcknowledgeInterrupt(uint value) => Bar0.Write32(IrqAck, value);

    private static void WaitUntil(Func<bool> done, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!done())
        {
            if (DateTime.UtcNow > deadline) { throw new TimeoutException($"edu {what} did not finish within {timeout}"); }
            Thread.Sleep(1);
        }
    }
}
