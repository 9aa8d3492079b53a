using SharpFuzz;
using Vfio.Fuzz;

// Usage:
//   Vfio.Fuzz TARGET                  run under afl-fuzz (SharpFuzz fork server, out of process)
//   Vfio.Fuzz --replay TARGET DIR     run every file of DIR through TARGET in-process, no AFL
//   Vfio.Fuzz --make-seeds DIR        write the seed corpus
//   Vfio.Fuzz --list                  print the harness names
if (args is ["--list"])
{
    foreach (var name in FuzzTargets.All.Keys) { Console.WriteLine(name); }
    return 0;
}
if (args is ["--make-seeds", var seedDir])
{
    Seeds.Write(seedDir);
    return 0;
}
if (args is ["--replay", var replayName, var dir] && FuzzTargets.All.TryGetValue(replayName, out var replayTarget))
{
    Console.WriteLine($"{replayName}: {FuzzTargets.Replay(replayTarget, dir)} inputs, no crash");
    return 0;
}
if (args is [var targetName] && FuzzTargets.All.TryGetValue(targetName, out var target))
{
    // The fork server hands each input over as a stream; an exception escaping the target is reported as a crash.
    Fuzzer.OutOfProcess.Run(stream =>
    {
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        target(copy.GetBuffer().AsSpan(0, (int)copy.Length));
    });
    return 0;
}
Console.Error.WriteLine($"usage: Vfio.Fuzz TARGET | --replay TARGET DIR | --make-seeds DIR | --list (targets: {string.Join(", ", FuzzTargets.All.Keys)})");
return 2;
