using System.Diagnostics;
using Vfio.Kernel;
using Vfio.Nvme;

namespace Vfio.E2E.Tests;

/// <summary>
/// Crash and restart: a child process (the probe's nvme-writer) writes numbered records to the NVMe device with a
/// Flush after every 8 and reports each completed flush; it is killed with SIGKILL in the middle of its writes. The
/// kernel closes its VFIO fds; a new process (this one) opens the device, resets the controller (bring-up disables
/// it first) and finds every record up to the last reported flush intact, then writes and reads again.
/// </summary>
[Trait("lab", Lab.NoIommu)]
[Trait("lab", Lab.Type1)]
public sealed class CrashTests
{
    private const ulong FirstByte = 128UL << 20;   // a range no other test writes
    private const int KillAfterFlushed = 48;

    [Fact]
    public void AWriterKilledMidWriteLeavesFlushedDataIntactAndTheDeviceUsable()
    {
        var address = Lab.BoundNvme();
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { Lab.ProbeDll, "nvme-writer", address.ToString(), FirstByte.ToString(System.Globalization.CultureInfo.InvariantCulture) })
        {
            psi.ArgumentList.Add(a);
        }
        int flushed = 0;
        using (var writer = Process.Start(psi)!)
        {
            while (flushed < KillAfterFlushed && writer.StandardOutput.ReadLine() is { } line)
            {
                if (line.StartsWith("flushed ", StringComparison.Ordinal)) { flushed = int.Parse(line[8..], System.Globalization.CultureInfo.InvariantCulture); }
            }
            Assert.True(flushed >= KillAfterFlushed, "the writer stopped early (its errors are in the test's standard error)");
            writer.Kill();   // SIGKILL: no finally blocks, no controller shutdown; the kernel closes the fds
            // Lines already written were flushes that completed before the kill.
            while (writer.StandardOutput.ReadLine() is { } line)
            {
                if (line.StartsWith("flushed ", StringComparison.Ordinal)) { flushed = int.Parse(line[8..], System.Globalization.CultureInfo.InvariantCulture); }
            }
            writer.WaitForExit();
            Assert.Equal(137, writer.ExitCode);   // 128 + SIGKILL
        }

        using var dev = VfioDevice.Open(address, new VfioOpenOptions { AllowNoIommu = true });
        using var c = NvmeController.Open(dev);
        var ns = c.GetNamespace(1);
        using var q = c.CreateIoQueue();
        using var record = dev.Dma.Allocate(WriterRecord.Size);
        int blocks = WriterRecord.Size / ns.BlockSize;
        ulong first = FirstByte / (ulong)ns.BlockSize;
        for (int n = 0; n < flushed; n++)
        {
            q.Read(ns, first + (ulong)(n * blocks), blocks, record);
            var span = record.Span;
            for (int i = 0; i < WriterRecord.Size; i++)
            {
                if (span[i] != WriterRecord.Expected(n, i))
                {
                    Assert.Fail($"record {n} of {flushed} flushed ones differs at byte {i}");
                }
            }
        }
        // And the device works for the new process.
        WriterRecord.Fill(record.Span, 999_999);
        q.Write(ns, first, blocks, record);
        record.Span.Clear();
        q.Read(ns, first, blocks, record);
        Assert.Equal(WriterRecord.Expected(999_999, 4095), record.Span[4095]);
        Lab.Report($"crash {Lab.Config}: writer killed after {flushed} flushed records; all intact after restart");
    }
}

/// <summary>Privilege: each missing capability is named in the error.</summary>
[Trait("lab", Lab.NoIommu)]
public sealed class PrivilegeTests
{
    [Fact]
    public void NoIommuDmaWithoutSysAdminIsToldPagemapNeedsIt()
    {
        var bdf = Lab.BoundEdu();
        // Root, but CAP_SYS_ADMIN dropped from the bounding set: the exec'd probe keeps CAP_SYS_RAWIO (the group
        // opens) and loses CAP_SYS_ADMIN (pagemap hides frame numbers).
        var (code, output) = Lab.Run("setpriv", "--inh-caps=-all", "--bounding-set=-sys_admin",
            "dotnet", Lab.ProbeDll, "open", bdf.ToString(), "--allow-noiommu", "--dma");
        Assert.Equal(3, code);
        Assert.Contains("opened", output);
        Assert.Contains("MissingCapabilityException", output);
        Assert.Contains("CAP_SYS_ADMIN", output);
    }
}

/// <summary>
/// Crash and restart of packet forwarding: <c>vfio net fwd</c> is killed with SIGKILL while it forwards between the
/// lab's two virtio-net ports; a new <c>vfio net fwd</c> resets both devices and forwards again.
/// </summary>
[Trait("lab", Lab.NoIommu)]
public sealed class ForwarderCrashTests
{
    [Fact]
    public void AForwarderKilledMidRunIsFollowedByOneThatForwards()
    {
        VfioCli.Json("bind", Lab.Net0, Lab.Net1);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { VfioCli.Dll, "net", "fwd", Lab.Net0, Lab.Net1, "-t", "120", "--unsafe-noiommu" }) { psi.ArgumentList.Add(a); }
        using (var fwd = Process.Start(psi)!)
        {
            // Both groups open means both ports are up; the forwarding loop starts right after (tx-first).
            Assert.True(SpinWait.SpinUntil(() => fwd.HasExited || VfioGroupsOpenBy(fwd.Id) >= 2, TimeSpan.FromSeconds(90)),
                "the forwarder never opened both ports");
            if (fwd.HasExited) { Assert.Fail($"the forwarder exited early: {fwd.StandardOutput.ReadToEnd()}"); }
            Thread.Sleep(TimeSpan.FromSeconds(3));
            Assert.False(fwd.HasExited, "the forwarder stopped before it was killed");
            fwd.Kill();
            fwd.WaitForExit();
            Assert.Equal(137, fwd.ExitCode);
        }

        var d = VfioCli.Json("net", "fwd", Lab.Net0, Lab.Net1, "-t", "2", "--unsafe-noiommu");
        long packets = d.GetProperty("packets").GetInt64();
        Assert.True(packets > 0, $"the new forwarder forwarded nothing: {d}");
        Lab.Report($"crash {Lab.Config}: net fwd killed mid-run; the next one forwarded {packets} packets in 2 s");
    }

    private static int VfioGroupsOpenBy(int pid)
    {
        try
        {
            return Directory.GetFileSystemEntries($"/proc/{pid}/fd")
                .Count(fd => new FileInfo(fd).LinkTarget is { } t && t.StartsWith("/dev/vfio/noiommu-", StringComparison.Ordinal));
        }
        catch (Exception e) when (e is DirectoryNotFoundException or IOException or UnauthorizedAccessException)
        {
            return 0;   // the process is exiting
        }
    }
}
