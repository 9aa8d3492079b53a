using Vfio.Devices;
using Vfio.Dma;
using Vfio.Kernel;

namespace Vfio.E2E.Tests;

/// <summary>
/// Every public entry point of the core library that takes a BDF, region index, offset, length, IRQ index or count,
/// vector, DMA size or buffer, called against the real kernel VFIO device (edu) with out-of-range, unaligned,
/// negative and disposed arguments. Each row must answer with exactly the exception its XML docs name, with a message
/// that names the argument or the limit; afterwards the same open device still computes and does DMA, and a fresh
/// open works. The device is opened once for the whole table (a No-IOMMU open costs about 350 ms in the guest).
/// </summary>
[Trait("lab", "noiommu")]
[Trait("lab", "type1")]
public sealed class KernelBadInputTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private static readonly VfioOpenOptions OptIn = new() { AllowNoIommu = true };

    /// <summary>One bad call: what it is, the exception type its docs promise, and words its message must contain.</summary>
    private sealed record Row(string Call, Type Expected, Action Act, params string[] Mentions);

    private static Row Bad<T>(string call, Action act, params string[] mentions) where T : Exception =>
        new(call, typeof(T), act, mentions);

    [Fact]
    public void EveryBadArgumentGetsItsDocumentedExceptionAndTheDeviceStaysUsable()
    {
        var failures = new List<string>();
        int rows = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var phases = new List<string>();
        void Phase(string name) { phases.Add($"{name} {clock.ElapsedMilliseconds} ms"); clock.Restart(); }
        void Check(IEnumerable<Row> table)
        {
            foreach (var row in table)
            {
                rows++;
                Exception? thrown = null;
                try { row.Act(); }
                catch (Exception e) { thrown = e; }
                if (Describe(row, thrown) is { } problem) { failures.Add($"{row.Call}: {problem}"); }
            }
        }

        Check(AddressRows());
        Phase("addresses");

        var dev = VfioDevice.Open(Lab.BoundEdu(), OptIn);
        try
        {
            var bar0 = dev.OpenRegion(PciRegion.Bar0);
            var config = dev.OpenRegion(PciRegion.Config);
            var msiInfo = dev.GetIrqInfo(IrqIndex.Msi);
            var msi = dev.EnableInterrupts(IrqIndex.Msi, 1);
            var vector = msi[0];
            var buffer = dev.Dma.Allocate(4096, new DmaAllocationOptions { Name = "bad-input" });
            Phase("open");

            Check(DeviceRows(dev, msiInfo));
            Check(RegionRows(bar0));
            Check(RegionRows(config));
            Check(InterruptRows(dev, msi));
            Check(DmaRows(dev, buffer));

            bar0.Dispose();
            msi.Dispose();
            buffer.Dispose();
            Check(DisposedRows(bar0, msi, vector, buffer));
            Phase("table");

            // The same open device still works: registers, the factorial unit, MSI again and a DMA round trip.
            ProveUsable(dev);
            Phase("still usable");

            var stillOpen = dev.OpenRegion(PciRegion.Bar0);
            dev.Dispose();
            Check(DisposedDeviceRows(dev, stillOpen));
            Phase("disposed device");
        }
        finally
        {
            dev.Dispose();
        }

        // A fresh open of the same device works too.
        using (var again = VfioDevice.Open(Lab.BoundEdu(), OptIn))
        {
            using var bar0 = again.OpenRegion(PciRegion.Bar0);
            var edu = new Edu(bar0);
            Assert.Equal(0x010000edu, edu.Id);
            Assert.Equal(5040u, edu.ComputeFactorial(7, Timeout));
        }
        Phase("reopen");

        TestContext.Current.TestOutputHelper?.WriteLine($"{rows} bad-input rows, {failures.Count} failed ({Lab.Config}); {string.Join(", ", phases)}");
        Assert.True(failures.Count == 0, $"{failures.Count} of {rows} rows failed:\n" + string.Join('\n', failures));
        Assert.True(rows >= 80, $"only {rows} rows ran");
    }

    /// <summary>Null when <paramref name="thrown"/> is what <paramref name="row"/> expects, otherwise what is wrong.</summary>
    private static string? Describe(Row row, Exception? thrown)
    {
        if (thrown is null) { return $"returned normally, expected {row.Expected.Name}"; }
        if (thrown.GetType() != row.Expected)
        {
            return $"threw {thrown.GetType().Name} ({thrown.Message}), expected {row.Expected.Name}";
        }
        if (string.IsNullOrWhiteSpace(thrown.Message)) { return "empty message"; }
        if (thrown is ObjectDisposedException ode && string.IsNullOrEmpty(ode.ObjectName))
        {
            return "ObjectDisposedException does not name the object";
        }
        foreach (var word in row.Mentions)
        {
            if (!thrown.Message.Contains(word, StringComparison.OrdinalIgnoreCase))
            {
                return $"message '{thrown.Message}' does not mention '{word}'";
            }
        }
        return null;
    }

    private static IEnumerable<Row> AddressRows()
    {
        foreach (var text in new[] { "", "0000:00:04", "00.04.0", "zz:00.0", "0000:00:20.0", "0000:00:04.8", "10000:00:04.0", "0000:100:04.0", "0000:00:04.0x" })
        {
            yield return Bad<FormatException>($"PciAddress.Parse(\"{text}\")", () => PciAddress.Parse(text), $"'{text}'", "DDDD:BB:DD.F");
        }
        yield return Bad<FormatException>("VfioDevice.Open(\"not-a-bdf\")", () => VfioDevice.Open("not-a-bdf", OptIn).Dispose(), "not-a-bdf");
        yield return Bad<DeviceNotFoundException>("VfioDevice.Open(0000:7f:1f.7)",
            () => VfioDevice.Open(PciAddress.Parse("0000:7f:1f.7"), OptIn).Dispose(), "0000:7f:1f.7");
        var unbound = Lab.UnboundEdu2();
        yield return Bad<DeviceNotBoundException>($"VfioDevice.Open({unbound}, not bound)",
            () => VfioDevice.Open(unbound, OptIn).Dispose(), unbound.ToString(), "bind");
        foreach (int bar in new[] { -1, 6, int.MaxValue, int.MinValue })
        {
            yield return Bad<ArgumentOutOfRangeException>($"PciRegion.Bar({bar})", () => PciRegion.Bar(bar), "0-5");
        }
    }

    private static IEnumerable<Row> DeviceRows(VfioDevice dev, IrqInfo msi)
    {
        int regions = dev.Info.RegionCount, irqs = dev.Info.IrqCount;
        string regionLimit = $"0..{regions - 1}", irqLimit = $"0..{irqs - 1}";
        foreach (int index in new[] { -1, regions, 99, int.MaxValue, int.MinValue })
        {
            yield return Bad<ArgumentOutOfRangeException>($"GetRegionInfo({index})", () => dev.GetRegionInfo(index), "index", regionLimit);
            yield return Bad<ArgumentOutOfRangeException>($"OpenRegion({index})", () => dev.OpenRegion(index).Dispose(), "index", regionLimit);
        }
        foreach (int bar in new[] { 1, 2, 3, 4, 5 })   // edu implements only BAR0
        {
            yield return Bad<ArgumentException>($"OpenRegion(BAR{bar}, absent)", () => dev.OpenRegion(PciRegion.Bar(bar)).Dispose(), "index", "does not exist");
        }
        yield return Bad<ArgumentOutOfRangeException>("OpenBar(6)", () => dev.OpenBar(6).Dispose(), "0-5");
        foreach (int index in new[] { -1, irqs, 42, int.MaxValue })
        {
            yield return Bad<ArgumentOutOfRangeException>($"GetIrqInfo({index})", () => dev.GetIrqInfo((IrqIndex)index), "index", irqLimit);
            yield return Bad<ArgumentOutOfRangeException>($"EnableInterrupts({index}, 1)", () => dev.EnableInterrupts((IrqIndex)index, 1).Dispose(), "index", irqLimit);
        }
        foreach (int count in new[] { 0, -1, msi.Count + 1, int.MaxValue, int.MinValue })
        {
            // The count is checked before the index's state, so these are refused although MSI is enabled meanwhile.
            yield return Bad<ArgumentOutOfRangeException>($"EnableInterrupts(Msi, {count})", () => dev.EnableInterrupts(IrqIndex.Msi, count).Dispose(), "count", $"1..{msi.Count}");
        }
        yield return Bad<ArgumentOutOfRangeException>("EnableInterrupts(Msix, 1) (edu has none)", () => dev.EnableInterrupts(IrqIndex.Msix, 1).Dispose(), "count", "no Msix");
        yield return Bad<InvalidOperationException>("EnableInterrupts(Req, 1)", () => dev.EnableInterrupts(IrqIndex.Req, 1).Dispose(), "ReleaseRequested");
    }

    private static IEnumerable<Row> RegionRows(IDeviceRegion region)
    {
        ulong size = region.Size;
        string name = $"region {region.Info.Index}";
        string limit = $"size 0x{size:x}";
        // At the end, past it, straddling it, and "negative" (the top of the ulong range).
        foreach (ulong offset in new[] { size, size + 8, ulong.MaxValue - 7, ulong.MaxValue })
        {
            yield return Bad<ArgumentOutOfRangeException>($"{name}.Read8(0x{offset:x})", () => region.Read8(offset), "offset", limit);
            yield return Bad<ArgumentOutOfRangeException>($"{name}.Read16(0x{offset:x})", () => region.Read16(offset & ~1UL), "offset", limit);
            yield return Bad<ArgumentOutOfRangeException>($"{name}.Read32(0x{offset:x})", () => region.Read32(offset & ~3UL), "offset", limit);
            yield return Bad<ArgumentOutOfRangeException>($"{name}.Read64(0x{offset:x})", () => region.Read64(offset & ~7UL), "offset", limit);
            yield return Bad<ArgumentOutOfRangeException>($"{name}.Write32(0x{offset:x})", () => region.Write32(offset & ~3UL, 0), "offset", limit);
            yield return Bad<ArgumentOutOfRangeException>($"{name}.Read(0x{offset:x}, 1 byte)", () => region.Read(offset, new byte[1]), "offset", limit);
            yield return Bad<ArgumentOutOfRangeException>($"{name}.Write(0x{offset:x}, 1 byte)", () => region.Write(offset, new byte[1]), "offset", limit);
        }
        yield return Bad<ArgumentOutOfRangeException>($"{name}.Read16(size-1)", () => region.Read16(size - 1), "offset", limit);
        yield return Bad<ArgumentOutOfRangeException>($"{name}.Read32(size-2)", () => region.Read32(size - 2), "offset", limit);
        yield return Bad<ArgumentOutOfRangeException>($"{name}.Read64(size-4)", () => region.Read64(size - 4), "offset", limit);
        yield return Bad<ArgumentOutOfRangeException>($"{name}.Write64(size-4)", () => region.Write64(size - 4, 0), "offset", limit);
        yield return Bad<ArgumentOutOfRangeException>($"{name}.Read(size-8, 16 bytes)", () => region.Read(size - 8, new byte[16]), "offset", limit);
        yield return Bad<ArgumentOutOfRangeException>($"{name}.Write(size-1, 2 bytes)", () => region.Write(size - 1, new byte[2]), "offset", limit);
        yield return Bad<ArgumentException>($"{name}.Read16(1)", () => region.Read16(1), "offset", "aligned");
        yield return Bad<ArgumentException>($"{name}.Read32(2)", () => region.Read32(2), "offset", "aligned");
        yield return Bad<ArgumentException>($"{name}.Read64(4)", () => region.Read64(4), "offset", "aligned");
        yield return Bad<ArgumentException>($"{name}.Write16(3)", () => region.Write16(3, 0), "offset", "aligned");
        yield return Bad<ArgumentException>($"{name}.Write32(0x41)", () => region.Write32(0x41, 0), "offset", "aligned");
        yield return Bad<ArgumentException>($"{name}.Write64(0x84)", () => region.Write64(0x84, 0), "offset", "aligned");
    }

    private static IEnumerable<Row> InterruptRows(VfioDevice dev, IInterruptSet msi)
    {
        yield return Bad<InvalidOperationException>("EnableInterrupts(Msi, 1) while enabled", () => dev.EnableInterrupts(IrqIndex.Msi, 1).Dispose(), "already enabled");
        foreach (int vector in new[] { -1, msi.Count, int.MaxValue, int.MinValue })
        {
            yield return Bad<ArgumentOutOfRangeException>($"msi[{vector}]", () => _ = msi[vector], "vector", $"0..{msi.Count - 1}");
        }
    }

    private static IEnumerable<Row> DmaRows(VfioDevice dev, DmaBuffer buffer)
    {
        var dma = dev.Dma;
        yield return Bad<ArgumentOutOfRangeException>("Dma.Allocate(0)", () => dma.Allocate(0).Dispose(), "size", "empty");
        yield return Bad<ArgumentOutOfRangeException>("Dma.Allocate(ulong.MaxValue)", () => dma.Allocate(ulong.MaxValue).Dispose(), "size", "too large");
        yield return Bad<ArgumentOutOfRangeException>("Dma.Allocate(-4096 as ulong)", () => dma.Allocate(unchecked((ulong)-4096L)).Dispose(), "size", "too large");
        // 1 PiB: more than any pool of hugepages and more than the user address space.
        if (dev.Mode == VfioMode.NoIommu)
        {
            yield return Bad<HugePagesUnavailableException>("Dma.Allocate(1 PiB)", () => dma.Allocate(1UL << 50).Dispose(), "hugepages");
        }
        else
        {
            yield return Bad<VfioResourceException>("Dma.Allocate(1 PiB)", () => dma.Allocate(1UL << 50).Dispose(), "mmap");
        }
        foreach (ulong alignment in new ulong[] { 0, 3, 2048, 4097, 1UL << 63 | 1 })
        {
            yield return Bad<ArgumentOutOfRangeException>($"Dma.Allocate(4096, Alignment {alignment})",
                () => dma.Allocate(4096, new DmaAllocationOptions { Alignment = alignment }).Dispose(), "options", "power of two");
        }
        ulong length = buffer.Length;
        foreach (ulong offset in new[] { length, length + 1, ulong.MaxValue })
        {
            yield return Bad<ArgumentOutOfRangeException>($"buffer.GetDeviceAddress({offset})", () => buffer.GetDeviceAddress(offset), "offset", $"{length}-byte");
            yield return Bad<ArgumentOutOfRangeException>($"buffer.GetContiguousLength({offset})", () => buffer.GetContiguousLength(offset), "offset", $"{length}-byte");
            yield return Bad<ArgumentOutOfRangeException>($"buffer.Slice({offset}, 1)", () => buffer.Slice(offset, 1), "offset", $"{length}-byte");
        }
        yield return Bad<ArgumentOutOfRangeException>("buffer.Slice(length-8, 16)", () => buffer.Slice(length - 8, 16), "offset", $"{length}-byte");
        yield return Bad<ArgumentOutOfRangeException>("buffer.Slice(0, -1)", () => buffer.Slice(0, -1), "length", "-1");
        yield return Bad<ArgumentOutOfRangeException>("buffer.Slice(0, int.MinValue)", () => buffer.Slice(0, int.MinValue), "length");
        yield return Bad<InvalidOperationException>("buffer.Dispose() while marked in use", () =>
        {
            using var lease = buffer.MarkInUse("the bad-input test");
            buffer.Dispose();
        }, "bad-input", "the bad-input test");
    }

    private static IEnumerable<Row> DisposedRows(IDeviceRegion bar0, IInterruptSet msi, IInterruptVector vector, DmaBuffer buffer)
    {
        yield return Bad<ObjectDisposedException>("disposed region.Read8", () => bar0.Read8(0));
        yield return Bad<ObjectDisposedException>("disposed region.Read32", () => bar0.Read32(Edu.Identification));
        yield return Bad<ObjectDisposedException>("disposed region.Read64", () => bar0.Read64(0x80));
        yield return Bad<ObjectDisposedException>("disposed region.Write32", () => bar0.Write32(Edu.Liveness, 1));
        yield return Bad<ObjectDisposedException>("disposed region.Read(span)", () => bar0.Read(0, new byte[4]));
        yield return Bad<ObjectDisposedException>("disposed region.Write(span)", () => bar0.Write(Edu.Liveness, new byte[4]));
        yield return Bad<ObjectDisposedException>("disposed region.Read32 out of range", () => bar0.Read32(ulong.MaxValue));
        yield return Bad<ObjectDisposedException>("disposed set[0]", () => _ = msi[0]);
        yield return Bad<ObjectDisposedException>("disposed set's vector.Trigger()", vector.Trigger);
        yield return Bad<ObjectDisposedException>("disposed set's vector.Unmask()", vector.Unmask);
        yield return Bad<ObjectDisposedException>("disposed buffer.Span", () => _ = buffer.Span.Length);
        yield return Bad<ObjectDisposedException>("disposed buffer.Slice", () => buffer.Slice(0, 1));
        yield return Bad<ObjectDisposedException>("disposed buffer.GetDeviceAddress", () => buffer.GetDeviceAddress(0));
        yield return Bad<ObjectDisposedException>("disposed buffer.GetContiguousLength", () => buffer.GetContiguousLength(0));
        yield return Bad<ObjectDisposedException>("disposed buffer.MarkInUse", () => buffer.MarkInUse("late").Dispose());
    }

    private static IEnumerable<Row> DisposedDeviceRows(VfioDevice dev, IDeviceRegion regionOfDev)
    {
        yield return Bad<ObjectDisposedException>("disposed device.GetRegionInfo", () => dev.GetRegionInfo(PciRegion.Bar0));
        yield return Bad<ObjectDisposedException>("disposed device.OpenRegion", () => dev.OpenRegion(PciRegion.Bar0).Dispose());
        yield return Bad<ObjectDisposedException>("disposed device.GetIrqInfo", () => dev.GetIrqInfo(IrqIndex.Msi));
        yield return Bad<ObjectDisposedException>("disposed device.EnableInterrupts", () => dev.EnableInterrupts(IrqIndex.Msi, 1).Dispose());
        yield return Bad<ObjectDisposedException>("disposed device.Reset", dev.Reset);
        yield return Bad<ObjectDisposedException>("disposed device.Dma", () => _ = dev.Dma);
        yield return Bad<ObjectDisposedException>("disposed device.Config.VendorId", () => _ = dev.Config.VendorId);
        yield return Bad<ObjectDisposedException>("region of a disposed device.Read32", () => regionOfDev.Read32(Edu.Identification));
    }

    private static void ProveUsable(VfioDevice dev)
    {
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var edu = new Edu(bar0);
        Assert.Equal(0x010000edu, edu.Id);
        foreach (uint v in new uint[] { 0, 0x12345678, 0xFFFFFFFF })
        {
            bar0.Write32(Edu.Liveness, v);
            Assert.Equal(~v, bar0.Read32(Edu.Liveness));
        }
        Assert.Equal(3628800u, edu.ComputeFactorial(10, Timeout));

        // MSI can be enabled again now the refused and the disposed sets are gone, and a software trigger arrives.
        using (var msi = dev.EnableInterrupts(IrqIndex.Msi, 1))
        {
            msi[0].Trigger();
            Assert.True(msi[0].WaitAsync(TestContext.Current.CancellationToken).AsTask().Wait(Timeout), "MSI vector did not fire");
        }

        const int count = 256;
        dev.Config.BusMaster = true;
        using var buffer = dev.Dma.Allocate(8192, new DmaAllocationOptions { Name = "bad-input-after" });
        var pattern = buffer.Slice(0, count);
        for (int i = 0; i < count; i++) { pattern[i] = (byte)(i * 7 + 3); }
        using (buffer.MarkInUse("edu DMA engine"))
        {
            edu.DmaFromRam(buffer.DeviceAddress.Value, 0, count, Timeout);
            edu.DmaToRamAt(0, buffer.GetDeviceAddress(4096).Value, count, Timeout);
        }
        dev.Config.BusMaster = false;
        Assert.True(buffer.Slice(0, count).SequenceEqual(buffer.Slice(4096, count)), "DMA round trip through the edu engine changed the data");
    }
}
