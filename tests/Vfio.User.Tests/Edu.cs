using Vfio.Devices;
using Vfio.Emulation.Edu;

namespace Vfio.User.Tests;

/// <summary>A driver for the edu device, written against IDeviceRegion only (as the E2E tests' driver is).</summary>
internal sealed class Edu(IDeviceRegion bar0)
{
    private const uint DmaStart = 1, DmaToRam = 2;

    public IDeviceRegion Bar0 { get; } = bar0;

    public uint ComputeFactorial(uint n, TimeSpan timeout)
    {
        Bar0.Write32(EduDevice.Factorial, n);
        WaitUntil(() => (Bar0.Read32(EduDevice.Status) & 1) == 0, timeout, "factorial");
        return Bar0.Read32(EduDevice.Factorial);
    }

    public void DmaFromRam(ulong ram, ulong deviceOffset, uint count, TimeSpan timeout) =>
        Dma(ram, EduDevice.BufferAddress + deviceOffset, count, DmaStart, timeout);

    public void DmaToRamAt(ulong deviceOffset, ulong ram, uint count, TimeSpan timeout) =>
        Dma(EduDevice.BufferAddress + deviceOffset, ram, count, DmaStart | DmaToRam, timeout);

    private void Dma(ulong src, ulong dst, uint count, uint command, TimeSpan timeout)
    {
        Bar0.Write64(EduDevice.DmaSource, src);
        Bar0.Write64(EduDevice.DmaDestination, dst);
        Bar0.Write64(EduDevice.DmaCount, count);
        Bar0.Write64(EduDevice.DmaCommand, command);
        WaitUntil(() => (Bar0.Read64(EduDevice.DmaCommand) & DmaStart) == 0, timeout, "DMA");
    }

    public void RaiseInterrupt(uint value) => Bar0.Write32(EduDevice.IrqRaise, value);

    public void AcknowledgeInterrupt(uint value) => Bar0.Write32(EduDevice.IrqAck, value);

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
