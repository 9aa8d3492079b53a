using Vfio;
using Vfio.Kernel;

// Usage: Vfio.E2E.Probe open BDF [--allow-noiommu]
// Exit codes: 0 opened, 2 usage, 3 a VfioException (its type and message are printed).
if (args.Length < 2 || args[0] != "open")
{
    Console.Error.WriteLine("usage: Vfio.E2E.Probe open BDF [--allow-noiommu]");
    return 2;
}
try
{
    using var dev = VfioDevice.Open(PciAddress.Parse(args[1]), new VfioOpenOptions { AllowNoIommu = args.Contains("--allow-noiommu") });
    Console.WriteLine($"opened {dev.Address} in {dev.Mode} mode");
    return 0;
}
catch (VfioException e)
{
    Console.WriteLine($"{e.GetType().Name}: {e.Message}");
    return 3;
}
