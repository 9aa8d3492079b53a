// A program that knows Vfio only as NuGet packages: `./run test consumer` copies this file into an empty temporary
// folder beside a project file that references the packages of artifacts/packages (no project references) and a
// nuget.config that adds that folder as a source. It starts `vfio serve nvme` from the vfio tool installed out of the
// same folder, opens the emulated controller over vfio-user with the NVMe driver, writes one block and reads it back.
// Exit 0 when the block came back as written and the server stopped cleanly. Not part of Vfio.slnx.
using System.Diagnostics;
using System.Runtime.Versioning;
using Vfio.Nvme;
using Vfio.User.Client;

[assembly: SupportedOSPlatform("linux")]

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: Consumer VFIO-TOOL SOCKET");
    return 2;
}
string tool = args[0], socket = args[1];

var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
foreach (var a in new[] { "serve", "nvme", "--socket", socket, "--size-mb", "8", "--once" }) { start.ArgumentList.Add(a); }
using var serve = Process.Start(start)!;
var serveOut = serve.StandardOutput.ReadToEndAsync();
var serveErr = serve.StandardError.ReadToEndAsync();

// The server creates the socket once it listens: connect until it does (or it has exited).
VfioUserDevice? device = null;
for (var deadline = DateTime.UtcNow.AddSeconds(60); device is null;)
{
    try { device = VfioUserDevice.Connect(socket); }
    catch (IOException) when (DateTime.UtcNow < deadline && !serve.HasExited) { Thread.Sleep(50); }
}

var written = new byte[4096];
new Random(21).NextBytes(written);
var read = new byte[written.Length];
ulong lba;
using (device)
using (var controller = NvmeController.Open(device))
using (var disk = NvmeBlockDevice.Open(controller))
{
    lba = disk.BlockCount / 2;
    disk.Write(lba, written);
    disk.Read(lba, read);
    Console.WriteLine($"{controller.Identity.ModelNumber.Trim()}: {disk.BlockCount} blocks of {disk.BlockSize} bytes");
}

if (!serve.WaitForExit(TimeSpan.FromSeconds(60))) { serve.Kill(); Console.Error.WriteLine("vfio serve did not exit"); return 1; }
Console.Write(await serveOut);
Console.Error.Write(await serveErr);
if (serve.ExitCode != 0) { Console.Error.WriteLine($"vfio serve exited {serve.ExitCode}"); return 1; }
if (!written.AsSpan().SequenceEqual(read)) { Console.Error.WriteLine($"block {lba} read back differs from what was written"); return 1; }
Console.WriteLine($"wrote {written.Length} bytes at LBA {lba} over vfio-user and read them back");
return 0;
