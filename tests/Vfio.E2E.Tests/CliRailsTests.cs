using System.Text.Json;

namespace Vfio.E2E.Tests;

/// <summary>
/// Issue 21's safety rails and doctor against the real kernel: a filesystem mounted from the guest's NVMe namespace
/// keeps <c>vfio bind</c> from taking the controller (one line naming the mount, exit 2, the kernel's nvme keeps it);
/// unmounted, the bind goes through. And <c>vfio doctor</c> reports what a No-IOMMU guest has.
/// </summary>
[Trait("lab", Lab.NoIommu)] // first lab run 2026-12-07: 2/2; in every CI run since
[Trait("cost", Lab.DebianKernel)] // mkfs.ext4 + mount: the 6.12 lab kernels have no ext4
public sealed class CliRailsTests
{
    private const string MountPoint = "/tmp/vfio-rails-mnt";

    /// <summary>Gives the controller to the kernel's nvme and returns its namespace 1's block device (/dev/nvmeXn1).</summary>
    private static string KernelNamespace()
    {
        if (Lab.Driver(Lab.Nvme) != "nvme")
        {
            var (code, output) = VfioCli.Run("unbind", Lab.Nvme, "--driver", "nvme");
            Assert.True(code == 0, output);
        }
        // The namespace's disk is the /sys/block entry whose sysfs object lies under the controller (or, under native
        // multipath, whose multipath/ links to a path device that does).
        string device = new DirectoryInfo(Lab.DeviceDir(Lab.Nvme)).ResolveLinkTarget(true)!.FullName;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            foreach (var disk in Directory.GetFileSystemEntries("/sys/block", "nvme*n1"))
            {
                var real = new DirectoryInfo(disk).ResolveLinkTarget(true)!.FullName;
                var multipath = Path.Combine(real, "multipath");
                bool onIt = real.StartsWith(device + "/", StringComparison.Ordinal) ||
                            (Directory.Exists(multipath) && Directory.GetFileSystemEntries(multipath)
                                .Any(p => new DirectoryInfo(p).ResolveLinkTarget(true)!.FullName.StartsWith(device + "/", StringComparison.Ordinal)));
                var node = $"/dev/{Path.GetFileName(disk)}";
                if (onIt && File.Exists(node)) { return node; }
            }
            Assert.True(DateTime.UtcNow < deadline, $"{Lab.Nvme}: no namespace block device within 60 s");
            Thread.Sleep(200);
        }
    }

    private static void Must(string file, params string[] args)
    {
        var (code, output) = Lab.Run(file, args);
        Assert.True(code == 0, $"{file} {string.Join(' ', args)} exited {code}: {output}");
    }

    [Fact]
    public void A_mounted_filesystem_on_the_nvme_blocks_the_bind_until_it_is_unmounted()
    {
        var node = KernelNamespace();
        Must("mkfs.ext4", "-F", "-q", node);
        Directory.CreateDirectory(MountPoint);
        Must("mount", node, MountPoint);
        bool mounted = true;
        try
        {
            var (code, stdout, stderr) = Lab.RunSplit("dotnet", [VfioCli.Dll, "bind", Lab.Nvme]);
            VfioCli.AssertNoStackTrace(stdout + stderr);
            Assert.Equal(2, code);
            var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Contains($"{Path.GetFileName(node)} is mounted on {MountPoint}", line, StringComparison.Ordinal);
            Assert.Contains($"'vfio bind --force {Lab.Nvme}'", line, StringComparison.Ordinal);
            Assert.Equal("nvme", Lab.Driver(Lab.Nvme));
            Lab.Report($"rails: refused: {line}");

            Must("umount", MountPoint);
            mounted = false;
            var bound = VfioCli.Json("bind", Lab.Nvme).GetProperty("devices")[0];
            Assert.Equal("bound", bound.GetProperty("action").GetString());
            Assert.Equal("nvme", bound.GetProperty("previousDriver").GetString());
            Assert.Equal("vfio-pci", Lab.Driver(Lab.Nvme));
        }
        finally
        {
            if (mounted) { Lab.Run("umount", MountPoint); }
        }
    }

    [Fact]
    public void Doctor_reports_a_no_iommu_guest_as_ready_with_the_warnings_it_deserves()
    {
        var (code, stdout, stderr) = Lab.RunSplit("dotnet", [VfioCli.Dll, "doctor", "--json"]);
        Assert.True(code == 0, $"vfio doctor exited {code}: {stdout}{stderr}");
        var report = JsonDocument.Parse(stdout).RootElement;
        Lab.Report($"doctor: {string.Join(", ", report.GetProperty("checks").EnumerateArray().Select(c => $"{c.GetProperty("id").GetString()}={c.GetProperty("status").GetString()}"))}");
        var status = report.GetProperty("checks").EnumerateArray()
            .ToDictionary(c => c.GetProperty("id").GetString()!, c => c.GetProperty("status").GetString());

        Assert.True(report.GetProperty("ready").GetBoolean());
        Assert.Equal("warning", status["iommu"]);       // -M pc: no vIOMMU
        Assert.Equal("warning", status["noiommu"]);     // on, and unsafe
        Assert.Equal("ok", status["modules"]);
        Assert.Equal("ok", status["dev-vfio"]);
        Assert.Equal("ok", status["hugepages"]);        // the lab reserves 256 x 2 MiB
        Assert.Equal("ok", status["memlock"]);          // root: CAP_IPC_LOCK
        Assert.Equal("ok", status["capabilities"]);
        Assert.NotEqual("failed", status["devices"]);
    }
}
